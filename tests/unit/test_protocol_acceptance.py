"""What the request models accept of OpenAI's API: every parameter of the openai package's
CompletionCreateParams is classified (honoured, accepted without effect, or refused with
`unsupported_parameter`), an explicit null is the default, and content the model cannot read is
refused with `unsupported_content` at its place.

A parameter that a new openai release adds fails test_every_openai_parameter_is_classified until
protocol.py (or protocol_not_honoured.py) declares it and the tables below classify it.
"""

from __future__ import annotations

import jsonschema
import pytest
from fastapi.exceptions import RequestValidationError
from openai.types import completion_create_params as legacy_params
from openai.types.chat import ChatCompletionMessage
from openai.types.chat import completion_create_params as chat_params
from pydantic import BaseModel, ValidationError

from mistral_serve.server.errors import validation_error
from mistral_serve.server.protocol import ChatCompletionRequest, ChatMessage, CompletionRequest
from mistral_serve.server.protocol_anthropic import MessagesRequest
from mistral_serve.server.protocol_ollama import ChatRequest as OllamaChat

HONOURED, NO_EFFECT, UNSUPPORTED = "honoured", "no effect", "unsupported"

# Every parameter of POST /v1/chat/completions in the openai package.
CHAT = {
    "messages": HONOURED, "model": HONOURED, "frequency_penalty": HONOURED, "logit_bias": HONOURED,
    "logprobs": HONOURED, "max_completion_tokens": HONOURED, "max_tokens": HONOURED, "n": HONOURED,
    "parallel_tool_calls": HONOURED, "presence_penalty": HONOURED, "response_format": HONOURED,
    "seed": HONOURED, "stop": HONOURED, "stream": HONOURED, "stream_options": HONOURED,
    "temperature": HONOURED, "tool_choice": HONOURED, "tools": HONOURED, "top_logprobs": HONOURED,
    "top_p": HONOURED, "user": HONOURED, "safety_identifier": HONOURED,  # both name the log's user
    "store": NO_EFFECT, "metadata": NO_EFFECT, "service_tier": NO_EFFECT, "prompt_cache_key": NO_EFFECT,
    "prompt_cache_retention": NO_EFFECT, "prompt_cache_options": NO_EFFECT, "verbosity": NO_EFFECT,
    "modalities": NO_EFFECT, "reasoning_effort": NO_EFFECT,  # ["text"] and "none"; other values refused
    "audio": UNSUPPORTED, "prediction": UNSUPPORTED, "web_search_options": UNSUPPORTED,
    "moderation": UNSUPPORTED, "functions": UNSUPPORTED, "function_call": UNSUPPORTED,
}
# Every parameter of POST /v1/completions (legacy) in the openai package.
LEGACY = {name: HONOURED for name in (
    "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
    "presence_penalty", "seed", "stop", "stream", "stream_options", "temperature", "top_p", "user")}
LEGACY["suffix"] = UNSUPPORTED

# A value of each parameter accepted without effect, as a client would send it.
NO_EFFECT_VALUES = {
    "store": True, "metadata": {"session": "abc"}, "service_tier": "priority", "prompt_cache_key": "conv-1",
    "prompt_cache_retention": "24h", "prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
    "verbosity": "low", "modalities": ["text"], "reasoning_effort": "none",
}
# Values that cannot be honoured, each refused with unsupported_parameter naming its parameter.
REFUSED_VALUES = [
    ("audio", {"voice": "alloy", "format": "wav"}), ("prediction", {"type": "content", "content": "x"}),
    ("web_search_options", {}), ("moderation", {"model": "omni-moderation-latest"}),
    ("functions", [{"name": "f", "parameters": {}}]), ("function_call", "auto"),
    ("modalities", ["text", "audio"]), ("reasoning_effort", "high"),
]
USER = [{"role": "user", "content": "Hi"}]
CHAT_BODY = {"model": "m", "messages": USER}
LEGACY_BODY = {"model": "m", "prompt": "Hi"}


def typed_dict_keys(*kinds) -> set[str]:
    return set().union(*(k.__required_keys__ | k.__optional_keys__ for k in kinds))


def kind_of(model: type[BaseModel], name: str) -> str:
    prop = model.model_json_schema()["properties"][name]
    return UNSUPPORTED if "x-unsupported" in prop else NO_EFFECT if prop.get("x-no-effect") else HONOURED


def error(model: type[BaseModel], body: dict):
    """The 400 the server gives for `body`, and pydantic's first error type."""
    with pytest.raises(ValidationError) as err:
        model.model_validate(body)
    return validation_error(RequestValidationError(err.value.errors(), body=body)), err.value.errors()[0]["type"]


# ---- every parameter is classified ------------------------------------------------------------------

@pytest.mark.parametrize("model,table,sdk", [
    (ChatCompletionRequest, CHAT, (chat_params.CompletionCreateParamsNonStreaming,
                                   chat_params.CompletionCreateParamsStreaming)),
    (CompletionRequest, LEGACY, (legacy_params.CompletionCreateParamsNonStreaming,
                                 legacy_params.CompletionCreateParamsStreaming)),
], ids=["chat", "completions"])
def test_every_openai_parameter_is_classified(model, table, sdk):
    assert sorted(typed_dict_keys(*sdk) ^ set(table)) == []  # new (or dropped) openai parameters
    assert [n for n in table if n not in model.model_fields] == []
    assert {n: kind_of(model, n) for n in table} == table


def test_a_parameter_openai_does_not_know_is_unrecognized():
    err, kind = error(ChatCompletionRequest, {**CHAT_BODY, "max_new_tokens": 5})
    assert kind == "extra_forbidden" and err.param == "max_new_tokens"
    assert err.message == "Unrecognized request argument supplied: max_new_tokens"


@pytest.mark.parametrize("name", list(NO_EFFECT_VALUES))
def test_a_parameter_without_effect_is_accepted_and_not_passed_on(name):
    body = ChatCompletionRequest.model_validate({**CHAT_BODY, name: NO_EFFECT_VALUES[name]})
    assert body.model_dump() == ChatCompletionRequest.model_validate(CHAT_BODY).model_dump()
    description = ChatCompletionRequest.model_json_schema()["properties"][name]["description"]
    assert description.startswith("Accepted; changes nothing here")


@pytest.mark.parametrize("name,value", REFUSED_VALUES, ids=[f"{n}={v}" for n, v in REFUSED_VALUES])
def test_a_parameter_that_cannot_be_honoured_is_refused_saying_why(name, value):
    err, kind = error(ChatCompletionRequest, {**CHAT_BODY, name: value})
    assert kind == "unsupported_parameter" and err.param == name
    assert "is not supported: " in err.message and name.split("_")[0] in err.message
    ChatCompletionRequest.model_validate({**CHAT_BODY, name: None})  # null: as if absent


def test_suffix_on_completions_is_refused_saying_why():
    err, kind = error(CompletionRequest, {**LEGACY_BODY, "suffix": "return x"})
    assert kind == "unsupported_parameter" and err.param == "suffix" and "fill-in-the-middle" in err.message


def test_safety_identifier_names_the_logs_user_when_user_is_absent():
    assert ChatCompletionRequest.model_validate({**CHAT_BODY, "safety_identifier": "h1"}).user == "h1"
    both = {**CHAT_BODY, "safety_identifier": "h1", "user": "u1"}
    assert ChatCompletionRequest.model_validate(both).user == "u1"


# ---- an explicit null is the default -----------------------------------------------------------------

def optional_fields(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items() if not info.is_required()]


@pytest.mark.parametrize("model,base", [
    (ChatCompletionRequest, CHAT_BODY), (CompletionRequest, LEGACY_BODY),
    (MessagesRequest, {"model": "m", "max_tokens": 5, "messages": USER}), (OllamaChat, {"model": "m"}),
], ids=["chat", "completions", "anthropic", "ollama"])
def test_null_for_every_optional_field_is_its_default(model, base):
    default = model.model_validate(base).model_dump()
    # One documented exception: /v1/completions' max_tokens defaults to 16 (OpenAI's legacy
    # default) while null, as on the chat path, sets no limit of the request's own (the server's
    # default cap), which is also what the Ollama generate path asks for with it.
    names = [n for n in optional_fields(model) if n not in base and (model, n) != (CompletionRequest, "max_tokens")]
    assert names
    for name in names:
        assert model.model_validate({**base, name: None}).model_dump() == default, name
    assert model.model_validate({**base, **dict.fromkeys(names)}).model_dump() == default


def test_the_published_schema_allows_null_where_the_server_does():
    validator = jsonschema.Draft202012Validator(ChatCompletionRequest.model_json_schema())
    names = optional_fields(ChatCompletionRequest)
    assert list(validator.iter_errors({**CHAT_BODY, **dict.fromkeys(names)})) == []
    # ... and refuses what the server refuses: an unsupported value, a required field's null.
    assert not validator.is_valid({**CHAT_BODY, "audio": {"voice": "alloy", "format": "wav"}})
    assert not validator.is_valid({**CHAT_BODY, "modalities": ["text", "audio"]})
    assert not validator.is_valid({**CHAT_BODY, "model": None})


def test_the_published_schema_takes_the_sdks_message_and_refuses_an_image():
    validator = jsonschema.Draft202012Validator(ChatCompletionRequest.model_json_schema())
    answer = ChatCompletionMessage(role="assistant", content="Hello", annotations=[]).model_dump()
    refusal = {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}], "prefix": None}
    assert list(validator.iter_errors({**CHAT_BODY, "messages": [*USER, answer, refusal, *USER]})) == []
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert not validator.is_valid({**CHAT_BODY, "messages": [{"role": "user", "content": [image]}]})


@pytest.mark.parametrize("field,value", [("temperature", "0.5"), ("n", 2.0), ("stream", 1), ("max_tokens", "5")])
def test_types_stay_strict(field, value):
    err, _ = error(ChatCompletionRequest, {**CHAT_BODY, field: value})
    assert err.param == field


def test_a_required_field_stays_required_when_null():
    err, _ = error(ChatCompletionRequest, {**CHAT_BODY, "model": None})
    assert err.param == "model"


# ---- messages as the SDK returns them ----------------------------------------------------------------

def test_an_answer_as_the_sdk_dumps_it_is_a_message():
    answer = ChatCompletionMessage(role="assistant", content="Hello", refusal=None, annotations=[])
    dumped = answer.model_dump()
    assert {"refusal", "audio", "annotations", "function_call", "tool_calls"} <= set(dumped)
    message = ChatMessage.model_validate({**dumped, "reasoning_content": None})
    assert message.model_dump(exclude_none=True) == {"role": "assistant", "content": "Hello", "prefix": False}


@pytest.mark.parametrize("message,content", [
    ({"role": "assistant", "content": None, "refusal": "I can't help with that."}, "I can't help with that."),
    ({"role": "assistant", "content": "Well.", "refusal": "No."}, "Well.\n\nNo."),
    ({"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}, [{"type": "text", "text": "No."}]),
])
def test_a_refusal_is_part_of_the_conversation_as_text(message, content):
    assert ChatMessage.model_validate(message).model_dump()["content"] == content


@pytest.mark.parametrize("field,value", [("audio", {"id": "audio_1"}),
                                         ("function_call", {"name": "f", "arguments": "{}"})])
def test_an_answers_audio_or_function_call_is_refused_saying_why(field, value):
    messages = [*USER, {"role": "assistant", "content": "x", field: value}, *USER]
    err, kind = error(ChatCompletionRequest, {**CHAT_BODY, "messages": messages})
    assert kind == "unsupported_parameter" and err.param == f"messages.1.{field}"


# ---- content the model cannot read ------------------------------------------------------------------

@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    {"type": "file", "file": {"file_id": "file-1"}},
    {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}},
], ids=lambda p: p["type"])
def test_a_part_that_is_not_text_is_refused_at_its_place(part):
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}]
    err, kind = error(ChatCompletionRequest, {**CHAT_BODY, "messages": messages})
    assert kind == "unsupported_content" and err.param == "messages.0.content.1"
    assert part["type"] in err.message and "text only" in err.message and "other places" not in err.message


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant", "tool"])
def test_text_parts_are_text_in_every_role(role):
    parts = [{"type": "text", "text": "a"},
             {"type": "text", "text": "b", "prompt_cache_breakpoint": {"mode": "explicit"}}]
    message = ChatMessage.model_validate({"role": role, "content": parts})
    assert message.model_dump()["content"] == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]


def test_a_malformed_text_part_names_what_is_missing():
    messages = [{"role": "user", "content": [{"type": "text"}]}]
    err, kind = error(ChatCompletionRequest, {**CHAT_BODY, "messages": messages})
    assert kind == "missing" and err.param == "messages.0.content.0.text"


@pytest.mark.parametrize("field,value,param", [
    ("tools", [{"type": "custom", "custom": {"name": "grep"}}], "tools.0.type"),
    ("tool_choice", {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}, "tool_choice.type"),
])
def test_tool_types_other_than_function_are_refused_saying_why(field, value, param):
    err, kind = error(ChatCompletionRequest, {**CHAT_BODY, field: value})
    assert kind == "unsupported_parameter" and err.param == param and "function" in err.message
