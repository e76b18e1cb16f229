"""Request bodies of Anthropic's Messages API (POST /v1/messages and /v1/messages/count_tokens).

Unknown fields are refused, as Anthropic's API refuses them; the optional fields its SDK can
send (cache_control, service_tier, thinking, ...) are declared and accepted, most of them without
effect on a self-hosted model; an explicit null is the field's default (protocol_common). Content
blocks the model cannot read (images, documents) validate here and are refused by the dialect
with a sentence saying why.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ..engine.params import MAX_STOP_STRINGS
from .protocol_common import StrictModel

_Strict = StrictModel


class _Block(_Strict):
    cache_control: dict[str, Any] | None = Field(default=None, description="Accepted; prefix caching is automatic.")


class TextBlock(_Block):
    type: Literal["text"]
    text: str
    citations: list[dict[str, Any]] | None = None


class ImageBlock(_Block):
    """Validated so that the dialect can refuse it clearly (the model reads text only)."""

    type: Literal["image", "document"]
    source: dict[str, Any]
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=128)
    input: dict[str, Any]


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1, max_length=256)
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] | None = None
    is_error: bool | None = None


ContentBlock = Annotated[TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


class Message(_Strict):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class AnthropicTool(_Strict):
    type: Literal["custom"] | None = None
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    input_schema: dict[str, Any] = Field(description="JSON Schema of the tool's input.")
    cache_control: dict[str, Any] | None = None


class ToolChoiceAuto(_Strict):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Strict):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Strict):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Strict):
    type: Literal["none"]


AnthropicToolChoice = Annotated[ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone,
                                Field(discriminator="type")]


class Metadata(_Strict):
    user_id: str | None = Field(default=None, max_length=256)


class _MessagesFields(_Strict):
    model: str = Field(description="The served model id.")
    messages: list[Message] = Field(min_length=1, description="The conversation so far.")
    system: str | list[TextBlock] | None = Field(default=None, description="The system prompt.")
    tools: Annotated[list[AnthropicTool], Field(max_length=128)] | None = None
    tool_choice: AnthropicToolChoice | None = None
    # Sent by Anthropic's SDK when asked for; accepted, without effect here (thinking is refused
    # when enabled, see the dialect).
    thinking: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None
    container: Any = None
    diagnostics: Any = None
    inference_geo: Any = None
    output_config: Any = None
    output_format: Any = None
    service_tier: Any = None
    speed: Any = None
    user_profile_id: Any = None
    workspace_id: Any = None
    mcp_servers: Any = None
    context_management: Any = None


class MessagesRequest(_MessagesFields):
    """POST /v1/messages."""

    max_tokens: int = Field(ge=1, description="Maximum tokens to generate (required).")
    stop_sequences: Annotated[list[str], Field(max_length=MAX_STOP_STRINGS)] | None = Field(
        default=None, description="Generation stops before any of these strings.")
    temperature: float = Field(default=1.0, ge=0.0, le=1.0, description="0 is greedy.")
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, description="0: off.")
    metadata: Metadata | None = None
    stream: bool = False


class CountTokensRequest(_MessagesFields):
    """POST /v1/messages/count_tokens."""
