"""The request bodies, in the order of the OpenAI reference.

These models validate requests, and their JSON Schema is what `/api/ai/models/{id}` publishes as
`json_request_schema`: one source of truth, so a body valid against the schema is accepted and
one that is not is refused. Unknown fields are refused (as the OpenAI API refuses them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engine.params import MAX_STOP_STRINGS

TokenId = Annotated[int, Field(ge=0)]
# The OpenAI API takes up to 4 stop strings; the engine itself takes more (MAX_STOP_STRINGS) for
# offline callers. The API keeps OpenAI's limit so that a request valid here is valid there.
OPENAI_MAX_STOP = 4
assert OPENAI_MAX_STOP <= MAX_STOP_STRINGS
Stop = str | Annotated[list[str], Field(max_length=OPENAI_MAX_STOP)] | None
# logit_bias keys are token ids written as strings.
LogitBias = dict[Annotated[str, Field(pattern=r"^[0-9]{1,9}$")], Annotated[float, Field(ge=-100, le=100)]]


class _Strict(BaseModel):
    # strict: no silent conversions ("3" is not 3, true is not 1), as the published schema says.
    model_config = ConfigDict(extra="forbid", strict=True)


# ---- chat request ------------------------------------------------------------------------------

class TextPart(_Strict):
    type: Literal["text"]
    text: str


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["developer", "system", "user", "assistant", "tool"] = Field(
        description="Who wrote the message. developer is treated as system.")
    content: str | list[TextPart] | None = Field(
        default=None, description="The text, or an array of text parts.")
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    prefix: bool = Field(default=False, description=(
        "On a last assistant message: the answer continues this text (as Mistral's API). Extension."))


class StreamOptions(_Strict):
    include_usage: bool = Field(default=False, description="Send a final chunk with the token usage.")


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


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


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


class ChatCompletionRequest(GuidedFields, _ChatFields):
    """POST /v1/chat/completions and /api/ai/chat/completions."""

    # (Bases in this order put the chat fields first in the published schema, the extensions last.)


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
    suffix: str | None = Field(default=None, description="Not supported: must be absent.")
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
