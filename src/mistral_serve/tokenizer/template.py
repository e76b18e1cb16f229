"""Jinja chat templates (a checkpoint's own, or one given with --chat-template PATH).

A chat template is code that came with a model file, so it runs in jinja2's
ImmutableSandboxedEnvironment: no attribute of Python's internals is reachable from it
(`{{ ''.__class__.__mro__ }}` fails with a SecurityError) and the data it is given cannot be
changed. Inside, it sees what transformers' `apply_chat_template` gives a template, so templates
written for transformers render the same text here:

    messages                OpenAI-style dicts, content as a string
    add_generation_prompt   True: the prompt ends where the assistant's answer starts
    bos_token, eos_token    the vocabulary's strings ("<s>", "<|im_end|>"), and unk/pad_token
    tools                   None (tool calling is not offered with these templates)
    raise_exception(msg)    how a template rejects a conversation
    strftime_now(fmt)       today's date, for templates that put it in the system prompt
    | tojson                JSON without ASCII escaping, with transformers' indent/sort options

and the same settings (trim_blocks, lstrip_blocks, loop controls, `{% generation %}` blocks).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .base import ChatTemplateError, TokenizerError
from .conversation import without_prefix_flags

NO_TOOLS = "tool calling with this checkpoint's chat template is not supported"

# Roles a template gets; "developer" (OpenAI's newer name) arrives as "system".
_ROLES = ("system", "developer", "user", "assistant")
# Text parts of one message are joined as mistral-common joins them.
_PART_SEPARATOR = "\n\n"
# (marker in the template, family name) for the version label; first match wins.
_FAMILIES = (
    ("<|im_start|>", "ChatML"),
    ("<|start_header_id|>", "Llama 3"),
    ("<start_of_turn>", "Gemma"),
    ("<|end|>", "Phi-3"),
    ("<|user|>", "Zephyr"),
    ("[INST]", "Mistral [INST]"),
)
_MAX_ERROR_CHARS = 300
# Appended to the message to continue, to find where its text ends in the rendered prompt (as
# transformers does for continue_final_message). The trailing space shows whether the template
# trimmed the message: then the prompt ends at its trimmed end.
_CONTINUE_MARKER = "__CONTINUE_FINAL_MESSAGE__ "


class _TemplateRaised(TemplateError):
    """raise_exception() called by the template."""


class _GenerationBlock(Extension):
    """`{% generation %}...{% endgeneration %}`: transformers marks the assistant's part of a
    training example with it; for a prompt it only renders its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, failing at the first unsafe attribute. (jinja2's own gives back an undefined
    value there, which prints as "": `{{ cycler.__init__ }}` would pass silently.)"""

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")


def _raise_exception(message: Any) -> None:
    raise _TemplateRaised(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    # jinja's own tojson escapes <, > and & for HTML; a prompt wants the JSON as written.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_ERROR_CHARS else line[:_MAX_ERROR_CHARS - 3] + "..."


class ChatTemplate:
    """One compiled template. `origin` names where it came from (a file) in errors."""

    def __init__(self, source: str, origin: str) -> None:
        """Compile `source`; TokenizerError naming `origin` when it does not compile."""
        self.source = source
        self.origin = origin
        env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationBlock])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source)
        except TemplateSyntaxError as err:
            raise TokenizerError(f"{origin}: the chat template does not compile: "
                                 f"{_one_line(err.message or err)} (template line {err.lineno})") from None
        except TemplateError as err:
            raise TokenizerError(f"{origin}: the chat template does not compile: "
                                 f"{_one_line(err)}") from None

    @property
    def family(self) -> str:
        """"ChatML", "Zephyr", "Llama 3", "Mistral [INST]", ... or "custom"."""
        return next((name for marker, name in _FAMILIES if marker in self.source), "custom")

    @property
    def is_mistral(self) -> bool:
        """Whether this is one of Mistral's `[INST]` templates (mistral-common's formats are then
        the better choice, with Mistral's vocabulary)."""
        return "[INST]" in self.source

    def mentions(self, text: str) -> bool:
        return text in self.source

    def render(self, messages: list[dict], special_tokens: Mapping[str, str],
               add_generation_prompt: bool = True, continue_final: bool = False) -> str:
        """The prompt text for prepared messages (see `prepare_messages`). Anything the template
        does wrong or rejects becomes a ChatTemplateError with the template's own words.

        continue_final: the text ends where the last message's content does, whatever the
        template writes after it (its end-of-turn), as transformers' continue_final_message
        renders it; add_generation_prompt is then False. Example with ChatML and a last
        assistant message "The answer": "...<|im_start|>assistant\nThe answer".
        """
        if not continue_final:
            return self._render(messages, special_tokens, add_generation_prompt)
        marked = [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + _CONTINUE_MARKER}]
        text = self._render(marked, special_tokens, False)
        at = text.rfind(_CONTINUE_MARKER.rstrip())
        if at < 0:
            raise ChatTemplateError("the chat template drops the end of the last message, so it "
                                    "cannot be continued")
        if text.startswith(_CONTINUE_MARKER, at):
            return text[:at]
        return text[:at].rstrip()  # the template trimmed the message

    def _render(self, messages: list[dict], special_tokens: Mapping[str, str], add_generation_prompt: bool) -> str:
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         tools=None, **special_tokens)
        except _TemplateRaised as err:
            detail = _one_line(err.message or "")
        except TemplateError as err:  # UndefinedError, SecurityError, a bad filter argument
            detail = _one_line(err.message or type(err).__name__)
        except Exception as err:  # the template's own bugs: "str" + None, a bad index
            detail = _one_line(f"{type(err).__name__}: {err}")
        raise ChatTemplateError(f"the chat template cannot render this conversation: {detail}")


def prepare_messages(messages: Any, tools: Any = None) -> list[dict]:
    """OpenAI-style messages as a template expects them: content a string (text parts joined),
    "developer" as "system", no "prefix" flags (the caller reads them first). Tools and tool
    messages raise ChatTemplateError. Returns new dicts.
    """
    if tools:
        raise ChatTemplateError(NO_TOOLS)
    if not isinstance(messages, list):
        raise ChatTemplateError("messages must be a list of message objects")
    if not messages:
        raise ChatTemplateError("the conversation must contain at least one message")
    prepared = []
    for index, message in enumerate(messages):
        where = f"message {index}"
        if not isinstance(message, dict):
            raise ChatTemplateError(f"{where} must be an object with a 'role'")
        role = message.get("role")
        if role == "tool" or message.get("tool_calls") or message.get("tool_call_id") is not None:
            raise ChatTemplateError(NO_TOOLS)
        if role not in _ROLES:
            raise ChatTemplateError(f"{where} has unknown role {role!r} (expected one of "
                                    f"{', '.join(_ROLES)})")
        content = _text_of(message.get("content"), f"{where} ({role})")
        prepared.append({**without_prefix_flags(message), "role": "system" if role == "developer" else role,
                         "content": content})
    return prepared


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ChatTemplateError(f"{where}: content must be a string or a list of text parts")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            raise ChatTemplateError(f"{where}: content parts of type {kind!r} are not supported; "
                                    "this model reads text parts only")
        if not isinstance(part.get("text"), str):
            raise ChatTemplateError(f"{where}: a text part needs a string 'text'")
        texts.append(part["text"])
    return _PART_SEPARATOR.join(texts)
