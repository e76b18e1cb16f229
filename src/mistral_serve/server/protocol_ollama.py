"""Request bodies of Ollama's API (/api/chat, /api/generate, /api/show).

Ollama's server is written in Go, whose JSON decoder ignores fields it does not know: so do these
models (extra="ignore"), and an option we cannot honour (num_gpu, mirostat, ...) is dropped the
same way. Types are checked strictly as Go checks them: a string where a number belongs is a 400
naming the field, not a silent conversion; a null leaves a field at its default, as Go's decoder
leaves a field it reads null into (protocol_common.RequestModel). Ranges are the chat path's (the
dialect translates these bodies into its request), so a bad value is refused there, under the
option's name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from .protocol_common import RequestModel


class _Lenient(RequestModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class Options(_Lenient):
    """The options we map onto sampling; every other Ollama option is accepted and ignored."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    num_predict: int | None = Field(default=None, description="> 0: at most this many tokens; -2: fill the "
                                    "context; 0, -1 (or another negative value): no limit of the request's own.")
    num_ctx: int | None = Field(default=None, ge=1, description="Bounds prompt + answer; capped to our context.")
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, description="-1: a random seed, as Ollama.")
    repeat_penalty: float | None = Field(default=None, description="Our repetition_penalty (over prompt and answer).")
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class ToolCallFunction(_Lenient):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] | str = Field(default_factory=dict,
                                            description="An object (Ollama's shape); a JSON string is accepted too.")


class ToolCall(_Lenient):
    id: str | None = None
    function: ToolCallFunction


class Message(_Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[str] | None = Field(default=None, description="Refused when non-empty: the model reads text only.")
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = Field(default=None, description="Which call a tool message answers (by function name).")
    tool_call_id: str | None = None
    thinking: str | None = None  # an earlier answer's reasoning: accepted, not part of the prompt


class ToolFunction(_Lenient):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Lenient):
    type: Literal["function"] = "function"
    function: ToolFunction


# "" and null: no constraint; "json": a JSON object; an object: a JSON Schema (checked by the dialect).
Format = str | dict[str, Any] | None
KeepAlive = str | float | None  # accepted without effect: the model stays loaded


class _Generating(_Lenient):
    model: str = Field(min_length=1)
    format: Format = None
    options: Options | None = None
    stream: bool | None = Field(default=None, description="Ollama streams unless this is false.")
    keep_alive: KeepAlive = None
    think: bool | str | None = Field(default=None, description="Refused when true: this model does not reason.")

    def model_post_init(self, _context: Any) -> None:
        self.stream = self.stream is not False  # what Dialect.respond reads


class ChatRequest(_Generating):
    """POST /api/chat."""

    messages: list[Message] | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)


class GenerateRequest(_Generating):
    """POST /api/generate."""

    prompt: str | None = None
    suffix: str | None = Field(default=None, description="Refused when non-empty (no fill-in-the-middle).")
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None
    images: list[str] | None = None


class ShowRequest(_Lenient):
    """POST /api/show (older clients send `name`)."""

    model: str | None = None
    name: str | None = None
    verbose: bool | None = None
