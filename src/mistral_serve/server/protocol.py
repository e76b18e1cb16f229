"""The request bodies, in the order of the OpenAI reference.

These models validate requests, and their JSON Schema is what `/api/ai/models/{id}` publishes as
`json_request_schema`: one source of truth, so a body valid against the schema is accepted and
one that is not is refused. Every parameter of OpenAI's reference is declared, in one of three
kinds: honoured; accepted without effect (`no_effect`: `store`, `metadata`, ...); or refused with
`unsupported_parameter` and the reason (`unsupported`: `audio`, `prediction`, ...). Names that
OpenAI does not document are refused as its API refuses them ("Unrecognized request argument").
An explicit null is the field's default (protocol_common.RequestModel). Content the model cannot
read (images, audio, files) is refused with `unsupported_content`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Discriminator, Field, Tag, model_validator

from ..engine.params import MAX_STOP_STRINGS
from .protocol_common import StrictModel, Unsupported, no_effect, refusal, text_only_part, unsupported
from .protocol_not_honoured import ChatNotHonoured, PromptCacheBreakpoint

TokenId = Annotated[int, Field(ge=0)]
# The OpenAI API takes up to 4 stop strings; the engine itself takes more (MAX_STOP_STRINGS) for
# offline callers. The API keeps OpenAI's limit so that a request valid here is valid there.
OPENAI_MAX_STOP = 4
assert OPENAI_MAX_STOP <= MAX_STOP_STRINGS
Stop = str | Annotated[list[str], Field(max_length=OPENAI_MAX_STOP)] | None
# logit_bias keys are token ids written as strings.
LogitBias = dict[Annotated[str, Field(pattern=r"^[0-9]{1,9}$")], Annotated[float, Field(ge=-100, le=100)]]


_Strict = StrictModel


# ---- chat request ------------------------------------------------------------------------------

class TextPart(_Strict):
    type: Literal["text"]
    text: str
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = no_effect("the prefix cache is automatic")


class RefusalPart(_Strict):
    """An earlier answer's refusal, as a part of an assistant message: its text is the part's."""

    type: Literal["refusal"]
    refusal: str


# A content part: text, or a refusal (read as text). Any other type (image_url, input_audio,
# file, ...) is refused with unsupported_content, at its place (messages.0.content.1).
Part = Annotated[TextPart, BeforeValidator(
    text_only_part({"refusal": "refusal"}),
    json_schema_input_type=Annotated[TextPart | RefusalPart, Field(discriminator="type")])]
# A string or a list of parts, told apart by the value's own type: an error is then told about
# the one branch the value meant ("messages.0.content.1: image_url content parts are not
# supported"), not "should be a valid string, and problems in 3 other places".
Content = Annotated[Annotated[str, Tag("text")] | Annotated[list[Part], Tag("parts")],
                    Discriminator(lambda v: "parts" if isinstance(v, list) else "text")]


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    """A message, as a client writes one or as the SDK returns an answer (`message.model_dump()`,
    with its nulls): an answer's refusal is part of the conversation, as its text; its other
    fields (annotations, reasoning) are accepted and are not part of the prompt."""

    role: Literal["developer", "system", "user", "assistant", "tool"] = Field(
        description="Who wrote the message. developer is treated as system.")
    content: Content | None = Field(
        default=None, description="The text, or an array of text parts (refusal parts read as text).")
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    prefix: bool = Field(default=False, description=(
        "On a last assistant message: the answer continues this text (as Mistral's API). Extension."))
    refusal: str | None = Field(default=None, exclude=True, description=(
        "An earlier answer's refusal: it is part of the conversation, as the message's text (after its content)."))
    annotations: list[dict[str, Any]] | None = no_effect("an earlier answer's citations are not part of the prompt")
    reasoning_content: str | None = no_effect("an earlier answer's reasoning (vLLM's field) is not part of the prompt")
    audio: Unsupported = unsupported("this model takes text only: send the earlier answer's transcript as content")
    function_call: Unsupported = unsupported("deprecated by OpenAI; send the call in tool_calls")

    @model_validator(mode="after")
    def _refusal_as_text(self) -> ChatMessage:
        if self.refusal:
            if isinstance(self.content, list):
                self.content = [*self.content, TextPart(type="text", text=self.refusal)]
            else:
                self.content = f"{self.content}\n\n{self.refusal}" if self.content else self.refusal
        return self


class StreamOptions(_Strict):
    include_usage: bool = Field(default=False, description="Send a final chunk with the token usage.")
    include_obfuscation: bool | None = no_effect("no obfuscation padding is sent")


class ResponseFormatText(_Strict):
    type: Literal["text"]


class ResponseFormatJSONObject(_Strict):
    type: Literal["json_object"]


class JSONSchemaFormat(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$", description="A name for the schema.")
    description: str | None = None
    # "schema" would shadow a BaseModel attribute in Python; JSON calls it "schema".
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema",
                                    description="The JSON Schema the answer must match.")
    strict: bool | None = Field(default=None, description="Accepted; the schema is always enforced.")


class ResponseFormatJSONSchema(_Strict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


ResponseFormat = Annotated[ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema,
                           Field(discriminator="type")]


class FunctionDefinition(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="JSON Schema of the arguments.")
    strict: bool | None = Field(default=None, description="Accepted; forced calls always match the schema.")


def _function_only(what: str, why: str) -> BeforeValidator:
    """OpenAI's other tool types (custom, allowed_tools) are refused as unsupported, saying why."""
    def check(kind: Any) -> Any:
        name = f"a {what} of type {str(kind)[:64]!r}"
        return refusal(kind, lambda k: not isinstance(k, str) or k == "function", why, name)

    return BeforeValidator(check)


class Tool(_Strict):
    type: Annotated[Literal["function"], _function_only("tool", "only function tools are (type function)")]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Annotated[Literal["function"], _function_only("tool_choice", (
        'name a function ({"type": "function", "function": {"name": ...}}), or send only the allowed tools'))]
    function: NamedFunction


# A mode or a named function, told apart by the value's type (one branch's errors, as Content).
ToolChoice = Annotated[Annotated[Literal["none", "auto", "required"], Tag("mode")] | Annotated[
    NamedToolChoice, Tag("named")], Discriminator(lambda v: "mode" if isinstance(v, str) else "named")]


class GuidedFields(_Strict):
    """Constraints beyond response_format, as vLLM names them. At most one per request."""

    guided_json: dict[str, Any] | None = Field(
        default=None, description="A JSON Schema the answer must match (like response_format json_schema). Extension.")
    guided_regex: str | None = Field(default=None, max_length=10_000,
                                     description="A regular expression the whole answer must match. Extension.")
    guided_choice: Annotated[list[str], Field(min_length=1, max_length=1000)] | None = Field(
        default=None, description="The answer is exactly one of these strings. Extension.")
    guided_grammar: str | None = Field(default=None, max_length=100_000,
                                       description="An EBNF (GBNF-style) grammar the answer must match. Extension.")


class _ChatFields(_Strict):

    model: str = Field(description="The model id, e.g. open-mistral-7b.")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0,
                               description="Sampling temperature; 0 is greedy (deterministic).")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0,
                         description="Nucleus sampling: keep the smallest set of tokens whose probability adds up to top_p.")
    max_tokens: int | None = Field(default=None, ge=1,
                                   description="Maximum tokens to generate (deprecated alias of max_completion_tokens).")
    max_completion_tokens: int | None = Field(default=None, ge=1, description="Maximum tokens to generate.")
    n: int = Field(default=1, ge=1, le=128, description="How many independent answers to generate.")
    stop: Stop = Field(default=None,
                       description=f"Up to {OPENAI_MAX_STOP} strings; generation stops before any of them (not included).")
    stream: bool = Field(default=False, description="Stream the answer as server-sent events.")
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0,
                                    description="Penalise tokens that already appeared in the answer.")
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0,
                                     description="Penalise tokens by how often they appeared in the answer.")
    logit_bias: LogitBias | None = Field(default=None,
                                         description="Map of token id (as a string) to a bias from -100 to 100.")
    logprobs: bool = Field(default=False, description="Return the log probability of each output token.")
    top_logprobs: int | None = Field(default=None, ge=0, le=20,
                                     description="Also return the most likely tokens at each position (needs logprobs).")
    seed: int | None = Field(default=None, description="Sample deterministically: the same seed gives the same answer.")
    user: str | None = Field(default=None, max_length=256, description="An end-user id, recorded in the request log.")
    safety_identifier: str | None = Field(default=None, max_length=256, exclude=True, description=(
        "An end-user id: recorded in the request log when user is absent."))
    # Extensions, as vLLM names them.
    top_k: int = Field(default=0, ge=-1, description="Keep only the k most likely tokens (0 or -1: off). Extension.")
    min_p: float = Field(default=0.0, ge=0.0, le=1.0,
                         description="Drop tokens less likely than min_p times the most likely one. Extension.")
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0,
                                      description="Divide the logits of tokens already seen (prompt or answer). Extension.")
    min_tokens: int = Field(default=0, ge=0, description="Generate at least this many tokens. Extension.")
    ignore_eos: bool = Field(default=False, description="Keep generating past the end-of-sequence token. Extension.")
    stop_token_ids: list[TokenId] | None = Field(default=None, description="Token ids that end generation. Extension.")
    response_format: ResponseFormat | None = Field(
        default=None, description="text, json_object (the answer parses as JSON) or json_schema (it matches the schema).")
    tools: Annotated[list[Tool], Field(max_length=128)] | None = Field(
        default=None, description="Functions the model may call (models with a v3 or later tokenizer).")
    tool_choice: ToolChoice | None = Field(
        default=None, description="none, auto (default with tools), required, or {type: function, function: {name}}.")
    parallel_tool_calls: bool = Field(default=True, description="Allow more than one call in an answer.")
    # Chat-template options, as vLLM names them.
    add_generation_prompt: bool = Field(default=True, description=(
        "End the prompt where the assistant's answer begins. Extension."))
    continue_final_message: bool = Field(default=False, description=(
        "Continue the last (assistant) message instead of starting a new one. Extension."))


class ChatCompletionRequest(ChatNotHonoured, GuidedFields, _ChatFields):
    """POST /v1/chat/completions and /api/ai/chat/completions."""

    # (Bases in this order put the chat fields first in the published schema, then the
    # extensions, then the parameters that change nothing or are refused.)

    @model_validator(mode="after")
    def _user_for_the_log(self) -> ChatCompletionRequest:
        # As on /v1/responses: OpenAI's successor to `user` names the user in the request log.
        if self.user is None and self.safety_identifier is not None:
            self.user = self.safety_identifier
        return self


# ---- completions request -----------------------------------------------------------------------

class _CompletionFields(_Strict):

    model: str
    prompt: str | list[str] | list[TokenId] | list[list[TokenId]] = Field(
        description="Text, a list of texts, token ids, or a list of token-id lists.")
    max_tokens: int | None = Field(default=16, ge=0, description=(
        "Maximum tokens to generate (default 16); 0 with echo scores the prompt without generating."))
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5, description="Return this many top logprobs per token.")
    echo: bool = Field(default=False, description="Return the prompt text before the completion.")
    stop: Stop = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    best_of: int | None = Field(default=None, ge=1, le=128, description="Only best_of = n is supported.")
    logit_bias: LogitBias | None = None
    seed: int | None = None
    suffix: Unsupported = unsupported("this server does no fill-in-the-middle")
    user: str | None = Field(default=None, max_length=256)
    top_k: int = Field(default=0, ge=-1)
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0)
    min_tokens: int = Field(default=0, ge=0)
    ignore_eos: bool = False
    stop_token_ids: list[TokenId] | None = None
    response_format: ResponseFormat | None = None


class CompletionRequest(GuidedFields, _CompletionFields):
    """POST /v1/completions: a raw prompt, no chat template."""


# ---- tokenizer endpoints -------------------------------------------------------------------------

class TokenizeRequest(_Strict):
    model: str | None = None
    prompt: str | None = Field(default=None, description="Raw text to tokenize.")
    messages: list[ChatMessage] | None = Field(default=None, description="A conversation, through the chat template.")
    add_special_tokens: bool = Field(default=True, description="Add BOS before a raw prompt.")


class DetokenizeRequest(_Strict):
    model: str | None = None
    tokens: list[TokenId]
