"""The OpenAI parameters this server does not honour, each declared so that it is not "unknown":
accepted without effect (`store`, `metadata`, `service_tier`, the prompt-cache hints, ...), or
refused with `unsupported_parameter` and the reason (`audio`, `prediction`, ...). A value that asks
for what the server does anyway (`modalities: ["text"]`, `reasoning_effort: "none"`) is accepted.
The chat request (protocol.py) takes these as a base; tests/unit/test_protocol_acceptance.py
checks that every parameter of the openai package is classified.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from .protocol_common import StrictModel, Unsupported, no_effect, refused_unless, unsupported


class PromptCacheBreakpoint(StrictModel):
    mode: Literal["explicit"]
    ttl: Literal["30m", "12h"] | None = None


class PromptCacheOptions(StrictModel):
    mode: Literal["implicit", "explicit"] | None = None
    ttl: Literal["30m"] | None = None


_TEXT_OUT = "this model writes text only"


def _text_modality(value: Any) -> bool:
    return not (isinstance(value, list) and "audio" in value)


def _no_reasoning(value: Any) -> bool:
    return not isinstance(value, str) or value == "none"


class ChatNotHonoured(StrictModel):
    """The rest of OpenAI's chat parameters: accepted without effect, or refused saying why."""

    store: bool | None = no_effect("answers are not kept for OpenAI's distillation or evals "
                                   "(GET /v1/chat/completions/{id} is not served)")
    metadata: Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
                        Field(max_length=16)] | None = no_effect("nothing is stored with the answer")
    service_tier: str | None = no_effect("one tier serves every request", max_length=64)
    prompt_cache_key: str | None = no_effect("the prefix cache is automatic", max_length=1024)
    prompt_cache_retention: Literal["in_memory", "24h"] | None = no_effect("the prefix cache is automatic")
    prompt_cache_options: PromptCacheOptions | None = no_effect("the prefix cache is automatic")
    verbosity: Literal["low", "medium", "high"] | None = no_effect(
        "this model has no verbosity control (ask for brevity in the prompt)")
    modalities: Annotated[list[Literal["text"]] | None, refused_unless(
        _text_modality, _TEXT_OUT + ' (send ["text"] or leave it out)', 'modalities with "audio"')] = no_effect(
        '["text"] is what this model writes; with "audio" it is refused')
    reasoning_effort: Annotated[Literal["none"] | None, refused_unless(
        _no_reasoning, 'this model does not reason (send "none" or leave it out)')] = no_effect(
        '"none" is what this model does; any other effort is refused')
    audio: Unsupported = unsupported(_TEXT_OUT)
    prediction: Unsupported = unsupported("predicted outputs are not implemented")
    web_search_options: Unsupported = unsupported(
        "this server has no web search (put what the model should know in the messages)")
    moderation: Unsupported = unsupported("this server runs no moderation model")
    functions: Unsupported = unsupported('deprecated by OpenAI; send tools: [{"type": "function", "function": ...}]')
    function_call: Unsupported = unsupported("deprecated by OpenAI; send tool_choice")
