"""Conversation shapes a chat format does not take as sent, mapped the way mistral-common maps them.

Both tokenizer kinds share these rules, so a conversation means the same whichever kind a
checkpoint gets:

- Continuing the last message: the last message is an assistant message the answer goes on
  from, asked for with Mistral's `"prefix": true` on it or vLLM's `continue_final_message`. The
  prompt then ends inside that message (no end-of-turn after it). `final_prefix` and
  `check_continuable` hold the rules (Mistral's: a prefix message is the last one, and it is an
  assistant's).
- Merged turns (`merged_turns`), for a Jinja template that refuses a conversation as sent
  ("Conversation roles must alternate ..."): every system message's text becomes one leading
  system message and consecutive user (or assistant) messages become one, texts joined by a
  blank line. That is what mistral-common's normalizer makes of the same conversation for
  Mistral's v1-v3 formats (one system prompt; same-role messages merged with "\\n\\n").

Example: [system S1, user U1, assistant A1, system S2, user U2] (pydantic-ai's output retry)
merges to [system "S1\\n\\nS2", user U1, assistant A1, user U2].
"""

from __future__ import annotations

from .base import ChatTemplateError

# mistral-common joins merged messages (and system prompts) with a blank line.
TURN_SEPARATOR = "\n\n"
NOTHING_TO_CONTINUE = ("the conversation must end with the assistant message to continue "
                       "(\"prefix\": true on it, or continue_final_message)")


def final_prefix(messages: list[dict]) -> bool:
    """Whether the last message carries Mistral's `"prefix": true`. ChatTemplateError where a
    prefix is misplaced: on another role than assistant, or on a message that is not the last."""
    last = len(messages) - 1
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not message.get("prefix"):
            continue
        if message.get("role") != "assistant":
            raise ChatTemplateError(f"message {index} ({message.get('role')}): only an assistant "
                                    "message can be a prefix")
        if index != last:
            raise ChatTemplateError(f"message {index} (assistant): a message with \"prefix\": true "
                                    "must be the last message")
    return bool(messages) and isinstance(messages[-1], dict) and bool(messages[-1].get("prefix"))


def check_continuable(messages: list[dict]) -> None:
    """The last message can be continued: an assistant message with text and no tool calls."""
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "assistant":
        raise ChatTemplateError(NOTHING_TO_CONTINUE)
    if last.get("tool_calls"):
        raise ChatTemplateError("an assistant message with tool_calls cannot be continued; "
                                "continue one that has text")
    if not message_text(last.get("content")):
        raise ChatTemplateError("the assistant message to continue has no text")


def message_text(content) -> str:
    """The text of a content string or list of text parts (joined as mistral-common joins
    them); "" for None or anything else."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return TURN_SEPARATOR.join(p["text"] for p in content
                                   if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def without_prefix_flags(message: dict) -> dict:
    """A copy of `message` without the "prefix" key (what it asked for is taken from it first)."""
    return {k: v for k, v in message.items() if k != "prefix"}


def merged_turns(messages: list[dict]) -> list[dict]:
    """Messages with string content (as prepared for a template), merged as the module docstring
    says: one leading system message, no two consecutive messages of the same role."""
    systems = [m["content"] for m in messages if m["role"] == "system" and m["content"]]
    merged: list[dict] = [{"role": "system", "content": TURN_SEPARATOR.join(systems)}] if systems else []
    for message in messages:
        if message["role"] == "system":
            continue
        if merged and merged[-1]["role"] == message["role"]:
            parts = [p for p in (merged[-1]["content"], message["content"]) if p]
            merged[-1] = {**merged[-1], "content": TURN_SEPARATOR.join(parts)}
        else:
            merged.append(dict(message))
    return merged
