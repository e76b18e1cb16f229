"""How a context overflow is worded (server/generation.py param_error): in the sentences of the API
the client speaks, which the client libraries match to recognise an overflow. The live server's
errors, and the libraries themselves, are tested in tests/e2e/test_context_errors.py."""

from __future__ import annotations

import pytest

from mistral_serve.engine.engine import ContextLengthError
from mistral_serve.engine.params import ParamError
from mistral_serve.server.generation import param_error

# What the client libraries look for (copied from their sources, langchain-openai 1.8.1 and
# litellm 1.110.2). langchain_openai/chat_models/base.py _handle_openai_bad_request: these in
# str(error), which the openai client (3.57) makes "Error code: 400 - " + the message alone
# (langchain_anthropic's handler looks for "prompt is too long" too).
# litellm/litellm_core_utils/exception_mapping_utils.py is_error_str_context_window_exceeded:
# these lowercase substrings, among others.
LANGCHAIN_SUBSTRINGS = ["context_length_exceeded", "Input tokens exceed the configured limit", "prompt is too long",
                        "ContextWindowExceededError"]
LITELLM_SUBSTRINGS = ["this model's maximum context length is", "exceed context limit", "prompt is too long"]


def overflow(param: str, prompt: int, asked: int | None, limit: int = 64) -> ContextLengthError:
    return ContextLengthError(param, "engine wording", limit=limit, prompt_tokens=prompt, completion_tokens=asked)


def litellm_recognises(message: str) -> bool:
    return any(s in message.lower() for s in LITELLM_SUBSTRINGS)


def langchain_recognises(message: str) -> bool:
    return any(s in "Error code: 400 - " + message for s in LANGCHAIN_SUBSTRINGS)


@pytest.mark.parametrize("err,prompt_param,endpoint,param,message", [
    (overflow("max_tokens", 8, 100), "messages", "/v1/chat/completions", "max_tokens",
     "This model's maximum context length is 64 tokens. However, you requested 108 tokens (8 in the messages, "
     "100 in the completion). Please reduce the length of the messages or completion. (context_length_exceeded)"),
    (overflow("prompt", 70, None), "messages", "/v1/chat/completions", "messages",
     "This model's maximum context length is 64 tokens. However, your messages resulted in 70 tokens. "
     "Please reduce the length of the messages. (context_length_exceeded)"),
    # The prompt alone is too long but max_tokens was given: OpenAI counts both.
    (overflow("prompt", 70, 5), "messages", "/api/ai/chat/completions", "messages",
     "This model's maximum context length is 64 tokens. However, you requested 75 tokens (70 in the messages, "
     "5 in the completion). Please reduce the length of the messages or completion. (context_length_exceeded)"),
    (overflow("max_tokens", 8, 100), "prompt", "/v1/completions", "max_tokens",
     "This model's maximum context length is 64 tokens, however you requested 108 tokens (8 in your prompt; "
     "100 for the completion). Please reduce your prompt; or completion length. (context_length_exceeded)"),
    (overflow("prompt", 70, None), "prompt", "/v1/completions", "prompt",
     "This model's maximum context length is 64 tokens, however you requested 70 tokens (70 in your prompt; "
     "0 for the completion). Please reduce your prompt; or completion length. (context_length_exceeded)"),
    (overflow("prompt", 70, 16), "messages", "/v1/messages", "messages",
     "prompt is too long: 70 tokens > 64 maximum"),
    (overflow("max_tokens", 8, 100), "messages", "/v1/messages", "max_tokens",
     "input length and `max_tokens` exceed context limit: 8 + 100 > 64, decrease input length or `max_tokens` "
     "and try again"),
])
def test_overflows_are_worded_as_each_api_does(err, prompt_param, endpoint, param, message):
    api = param_error(err, prompt_param, endpoint)
    assert (api.status, api.code, api.param, api.message) == (400, "context_length_exceeded", param, message)
    assert litellm_recognises(api.message)
    # All but Anthropic's max_tokens sentence, which LangChain does not know from Anthropic either.
    assert langchain_recognises(api.message) or api.message.startswith("input length and `max_tokens`")


def test_without_an_endpoint_the_openai_wording_is_used():
    # Until the callers pass their endpoint, every chat path words it as OpenAI's chat API does.
    api = param_error(overflow("prompt", 70, None), "messages")
    assert api.message.startswith("This model's maximum context length is 64 tokens. However, your messages")


def test_other_parameter_errors_keep_their_own_message():
    api = param_error(ParamError("temperature", "temperature must be at most 2"), "messages")
    assert (api.code, api.param, api.message) == ("invalid_parameter", "temperature", "temperature must be at most 2")
    assert not litellm_recognises(api.message) and not langchain_recognises(api.message)
