"""Jinja chat templates: rendered as transformers renders them, inside jinja2's sandbox, with
every failure a one-line error instead of an exception from deep inside jinja."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from mistral_serve.tokenizer import ChatTemplate, ChatTemplateError, TokenizerError
from mistral_serve.tokenizer.template import NO_TOOLS, prepare_messages

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
          " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
          "{% endif %}")


def render(source: str, messages: list[dict] | None = None, **kw) -> str:
    messages = prepare_messages(messages or [{"role": "user", "content": "Hi"}])
    return ChatTemplate(source, "test.jinja").render(messages, SPECIAL, **kw)


def test_chatml_template_renders_the_generation_prompt() -> None:
    assert render(CHATML) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert render(CHATML, add_generation_prompt=False) == "<|im_start|>user\nHi<|im_end|>\n"


def test_template_sees_the_special_tokens_and_no_tools() -> None:
    assert render("{{ bos_token }}|{{ eos_token }}|{{ tools is none }}|{{ unk_token is defined }}") \
        == "<s>|</s>|True|False"


def test_blocks_are_trimmed_as_transformers_trims_them() -> None:
    # trim_blocks drops the newline after a tag, lstrip_blocks the indentation before one.
    source = "{% for m in messages %}\n    {% if true %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}"
    assert render(source) == "[Hi]\n"


def test_tojson_keeps_non_ascii_and_takes_indent() -> None:
    value = '{"name": "café", "tags": ["<b>", "x"]}'
    assert render("{{ " + value + " | tojson }}") == json.dumps(json.loads(value), ensure_ascii=False)
    assert render("{{ {'a': 1} | tojson(indent=2) }}") == '{\n  "a": 1\n}'
    assert render("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}") == '{"a": 2, "b": 1}'


def test_strftime_now_loop_controls_and_generation_blocks() -> None:
    assert render("{{ strftime_now('%Y') }}") == str(datetime.now().year)
    assert render("{% for i in range(5) %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}") == "01"
    assert render("{% generation %}inside{% endgeneration %}") == "inside"


def test_a_template_that_raises_becomes_a_chat_template_error_with_its_words() -> None:
    source = "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    with pytest.raises(ChatTemplateError, match=re.escape(
            "the chat template cannot render this conversation: Conversation roles must alternate "
            "user/assistant/user/assistant/...")):
        render(source)


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('touch PWNED') }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ messages.append({'role': 'user', 'content': 'x'}) }}",
    "{{ raise_exception.__globals__ }}",
    "{{ cycler.__init__ }}",
    "{% set x = ''.__class__ %}ok",
])
def test_a_template_cannot_leave_the_sandbox(source: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ChatTemplateError, match="^the chat template cannot render this conversation: "):
        render(source)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("source, detail", [
    ("{{ missing.attribute }}", "'missing' is undefined"),
    ("{{ messages[0]['content'] + 1 }}", "TypeError"),
    ("{{ messages[5].content }}", "no element 5"),
])
def test_template_bugs_become_one_line_chat_template_errors(source: str, detail: str) -> None:
    with pytest.raises(ChatTemplateError, match=re.escape(detail)) as info:
        render(source)
    assert "\n" not in str(info.value)


def test_a_template_that_does_not_compile_is_a_tokenizer_error_naming_the_file() -> None:
    with pytest.raises(TokenizerError, match=r"broken\.jinja: the chat template does not compile: .*line 1"):
        ChatTemplate("{% for m in messages %}{{ m.content }}", "broken.jinja")


def test_messages_are_prepared_as_a_template_expects_them() -> None:
    messages = [{"role": "developer", "content": "Be terse."},
                {"role": "user", "content": [{"type": "text", "text": "First."},
                                             {"type": "text", "text": "Second."}], "name": "alice"}]
    assert prepare_messages(messages) == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "First.\n\nSecond.", "name": "alice"}]
    assert messages[0]["role"] == "developer"  # the caller's dicts are left alone


@pytest.mark.parametrize("messages, tools", [
    ([{"role": "user", "content": "Hi"}], [{"type": "function", "function": {"name": "f"}}]),
    ([{"role": "user", "content": "Hi"}, {"role": "tool", "content": "42", "tool_call_id": "a"}], None),
    ([{"role": "assistant", "content": None, "tool_calls": [{"id": "a"}]}], None),
])
def test_tools_and_tool_messages_are_refused(messages: list[dict], tools: list | None) -> None:
    with pytest.raises(ChatTemplateError, match=re.escape(NO_TOOLS)):
        prepare_messages(messages, tools)


@pytest.mark.parametrize("messages, message", [
    ("hello", "must be a list"),
    ([], "at least one message"),
    (["hi"], "must be an object"),
    ([{"role": "robot", "content": "x"}], "unknown role 'robot'"),
    ([{"role": "user", "content": None}], "content must be a string"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "'image_url' are not supported"),
    ([{"role": "user", "content": [{"type": "text"}]}], "a string 'text'"),
])
def test_bad_messages_are_refused_with_a_readable_message(messages, message: str) -> None:
    with pytest.raises(ChatTemplateError, match=re.escape(message)):
        prepare_messages(messages)


@pytest.mark.parametrize("source, family", [
    (CHATML, "ChatML"), ("<|user|>\n{{ x }}</s>", "Zephyr"), ("[INST] {{ x }} [/INST]", "Mistral [INST]"),
    ("<|start_header_id|>user<|end_header_id|>", "Llama 3"), ("{{ x }}", "custom"),
])
def test_template_family_names_the_format(source: str, family: str) -> None:
    assert ChatTemplate(source, "t").family == family
