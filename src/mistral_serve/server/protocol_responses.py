"""Request bodies of OpenAI's Responses API (POST /v1/responses).

The top level is strict, as OpenAI's: an unknown parameter is refused by name, and the documented
ones that change nothing on a self-hosted model (store's siblings: metadata, service_tier,
prompt_cache_key, ...) are declared and accepted. Input items are lenient: clients send back the
output items they were given, with whatever fields their SDK version keeps (status, annotations,
logprobs, phase, ...). Items and tools this model cannot use validate here and are refused by the
dialect with a sentence saying why.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from .protocol import OPENAI_MAX_STOP, JSONSchemaFormat, Stop
from .protocol_common import RequestModel, StrictModel


class _Strict(StrictModel):
    """Unknown names refused, nulls the defaults (as on the chat path)."""


class _Lenient(RequestModel):
    # Input items as an earlier response returns them carry fields a request never sets
    # (status, ids of outputs): those are ignored, not refused.
    model_config = ConfigDict(extra="ignore", strict=True)


# ---- input items -------------------------------------------------------------------------------

class TextContent(_Lenient):
    """input_text (a user's or system's words), output_text (an assistant's, sent back), refusal."""

    type: Literal["input_text", "output_text", "text", "summary_text"]
    text: str


class RefusalContent(_Lenient):
    type: Literal["refusal"]
    refusal: str


class OtherContent(BaseModel):
    """input_image, input_file, input_audio, ...: validated so that the dialect can refuse it."""

    model_config = ConfigDict(extra="allow")
    type: str


_TEXT_KINDS = ("input_text", "output_text", "text", "summary_text")


def _content_tag(v: Any) -> str:
    kind = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    return "text" if kind in _TEXT_KINDS else "refusal" if kind == "refusal" else "other"


Content = Annotated[Annotated[TextContent, Tag("text")] | Annotated[RefusalContent, Tag("refusal")]
                    | Annotated[OtherContent, Tag("other")], Discriminator(_content_tag)]


class MessageItem(_Lenient):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Content]
    id: str | None = None


class FunctionCallItem(_Lenient):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=256)
    name: str
    arguments: str
    id: str | None = None


class FunctionCallOutputItem(_Lenient):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=256)
    output: str | list[Content]
    id: str | None = None


class OtherItem(BaseModel):
    """Any other item type (reasoning, item_reference, web_search_call, ...): refused by name."""

    model_config = ConfigDict(extra="allow")
    type: str


def _item_tag(v: Any) -> str:
    kind = v.get("type", "message") if isinstance(v, dict) else getattr(v, "type", "message")
    return kind if kind in ("message", "function_call", "function_call_output") else "other"


InputItem = Annotated[Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
                      | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
                      | Annotated[OtherItem, Tag("other")], Discriminator(_item_tag)]


# ---- tools and formats ---------------------------------------------------------------------------

class FunctionTool(_Strict):
    type: Literal["function"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="JSON Schema of the arguments.")
    strict: bool | None = Field(default=None, description="Accepted; calls always match the schema.")


class OtherTool(BaseModel):
    """Hosted tools (web_search, file_search, code_interpreter, mcp, ...): refused by name."""

    model_config = ConfigDict(extra="allow")
    type: str


def _tool_tag(v: Any) -> str:
    kind = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    return "function" if kind == "function" else "other"


ResponseTool = Annotated[Annotated[FunctionTool, Tag("function")] | Annotated[OtherTool, Tag("other")],
                         Discriminator(_tool_tag)]


class FunctionChoice(_Strict):
    type: Literal["function"]
    name: str


class FormatText(_Strict):
    type: Literal["text"]


class FormatJSONObject(_Strict):
    type: Literal["json_object"]


class FormatJSONSchema(JSONSchemaFormat):
    """As chat's json_schema, with the schema's fields beside `type` rather than under it."""

    type: Literal["json_schema"]


TextFormat = Annotated[FormatText | FormatJSONObject | FormatJSONSchema, Field(discriminator="type")]


class TextConfig(_Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = Field(default=None, description="Accepted; no effect.")


class Reasoning(_Strict):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class StreamOptions(_Strict):
    include_obfuscation: bool | None = Field(default=None, description="Accepted; no obfuscation is sent.")


# ---- the request --------------------------------------------------------------------------------

class ResponsesRequest(_Strict):
    """POST /v1/responses."""

    model: str = Field(description="The model id, e.g. open-mistral-7b.")
    input: str | list[InputItem] = Field(description="The user's text, or a list of input items.")
    instructions: str | None = Field(default=None, description="A system message (not carried over by "
                                                               "previous_response_id).")
    previous_response_id: str | None = Field(default=None, description="Continue a stored response.")
    max_output_tokens: int | None = Field(default=None, ge=1, description="Maximum tokens to generate.")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description="0 is greedy; default 1.")
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_logprobs: int | None = Field(default=None, ge=0, le=20,
                                     description="Return each output token's logprob and this many alternatives.")
    tools: Annotated[list[ResponseTool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    store: bool | None = Field(default=None, description="Keep the response for GET and previous_response_id "
                                                         "(default true).")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16)
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = Field(default=None, description="message.output_text.logprobs adds logprobs; "
                                                                "the others have nothing to include here.")
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    prompt_cache_key: str | None = Field(default=None, description="Accepted; prefix caching is automatic.")
    prompt_cache_retention: str | None = None
    service_tier: str | None = None
    background: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=1, description="Accepted; it limits hosted tools only.")
    reasoning: Reasoning | None = None
    # Documented by OpenAI, refused by the dialect (a sentence saying why).
    conversation: Any = None
    prompt: Any = None
    context_management: Any = None
    # Extensions, as vLLM names them.
    seed: int | None = Field(default=None, description="Sample deterministically. Extension.")
    top_k: int | None = Field(default=None, ge=-1, description="Keep only the k most likely tokens. Extension.")
    min_p: float | None = Field(default=None, ge=0.0, le=1.0, description="Extension.")
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0, description="Extension.")
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0, description="Extension.")
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0, description="Extension.")
    stop: Stop = Field(default=None, description=f"Up to {OPENAI_MAX_STOP} stop strings. Extension.")

