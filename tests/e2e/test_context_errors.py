"""A request beyond the context is refused in OpenAI's own words, with code context_length_exceeded
(in the body, and at the end of the message, where LangChain looks for it), so that client
libraries recognise the overflow and take their fallbacks: LangChain raises its
ContextOverflowError, litellm its ContextWindowExceededError (a plain bad request would not fire
them). On the locked server (a 64-token context, support/error_shapes.py)."""

from __future__ import annotations

import os

import pytest

from support.error_shapes import AUTH, CHAT_PATHS, KEY, MAX_LEN, MODEL, USER, both, openai_error, post_json

# litellm's lazy imports write a dozen pydantic warnings about its own types.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")

LONG = [{"role": "user", "content": "word " * 100}]


def count(http, locked, **body) -> int:
    return http.post(locked.url + "/tokenize", json=body, headers=AUTH).json()["count"]


def chat_requested(limit: int, prompt: int, asked: int) -> str:
    return (f"This model's maximum context length is {limit} tokens. However, you requested {prompt + asked} "
            f"tokens ({prompt} in the messages, {asked} in the completion). Please reduce the length of the "
            "messages or completion. (context_length_exceeded)")


# ---- the wording ----------------------------------------------------------------------------------

def test_chat_messages_beyond_the_context(http, locked):
    n = count(http, locked, messages=LONG)
    assert n > MAX_LEN
    message = (f"This model's maximum context length is {MAX_LEN} tokens. However, your messages resulted in "
               f"{n} tokens. Please reduce the length of the messages. (context_length_exceeded)")
    send = post_json(http, locked, {"model": MODEL, "messages": LONG}, AUTH)
    # /v1 and the hub (/api/ai) carry the same sentence, each in its own shape.
    both(send, 400, "invalid_params", param="messages", code="context_length_exceeded")
    assert openai_error(send(CHAT_PATHS[0]), 400)["message"] == message


def test_chat_max_tokens_beyond_the_context(http, locked):
    n = count(http, locked, messages=USER)
    send = post_json(http, locked, {"model": MODEL, "messages": USER, "max_tokens": 100}, AUTH)
    both(send, 400, "invalid_params", param="max_tokens", code="context_length_exceeded")
    assert openai_error(send(CHAT_PATHS[0]), 400)["message"] == chat_requested(MAX_LEN, n, 100)
    hub = send(CHAT_PATHS[1]).json()
    assert hub["error"]["detail"] == chat_requested(MAX_LEN, n, 100)
    # A streamed request is refused the same way, before any event.
    r = http.post(locked.url + CHAT_PATHS[0], json={"model": MODEL, "messages": USER, "max_tokens": 100,
                                                     "stream": True}, headers=AUTH)
    assert openai_error(r, 400, code="context_length_exceeded")["message"] == chat_requested(MAX_LEN, n, 100)


def test_long_messages_with_max_tokens_count_both(http, locked):
    n = count(http, locked, messages=LONG)
    r = http.post(locked.url + CHAT_PATHS[0], json={"model": MODEL, "messages": LONG, "max_tokens": 5},
                  headers=AUTH)
    assert openai_error(r, 400, param="messages", code="context_length_exceeded")["message"] == \
        chat_requested(MAX_LEN, n, 5)


def test_completions_prompt_beyond_the_context(http, locked):
    prompt = "word " * 100
    n = count(http, locked, prompt=prompt)
    r = http.post(locked.url + "/v1/completions", json={"model": MODEL, "prompt": prompt}, headers=AUTH)
    err = openai_error(r, 400, param="prompt", code="context_length_exceeded")
    # 16: max_tokens' default on /v1/completions, as on OpenAI's.
    assert err["message"] == (f"This model's maximum context length is {MAX_LEN} tokens, however you requested "
                              f"{n + 16} tokens ({n} in your prompt; 16 for the completion). Please reduce your "
                              "prompt; or completion length. (context_length_exceeded)")
    r = http.post(locked.url + "/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": None},
                  headers=AUTH)
    err = openai_error(r, 400, param="prompt", code="context_length_exceeded")
    assert f"requested {n} tokens ({n} in your prompt; 0 for the completion)" in err["message"]


def test_completions_max_tokens_beyond_the_context(http, locked):
    n = count(http, locked, prompt="Hello")
    r = http.post(locked.url + "/v1/completions", json={"model": MODEL, "prompt": "Hello", "max_tokens": 100},
                  headers=AUTH)
    err = openai_error(r, 400, param="max_tokens", code="context_length_exceeded")
    assert err["message"] == (f"This model's maximum context length is {MAX_LEN} tokens, however you requested "
                              f"{n + 100} tokens ({n} in your prompt; 100 for the completion). Please reduce your "
                              "prompt; or completion length. (context_length_exceeded)")


def test_a_request_that_fits_is_not_refused(http, locked):
    n = count(http, locked, messages=USER)
    r = http.post(locked.url + CHAT_PATHS[0], json={"model": MODEL, "messages": USER, "max_tokens": MAX_LEN - n},
                  headers=AUTH)
    assert r.status_code == 200, r.text


# ---- the client libraries -------------------------------------------------------------------------

@pytest.mark.parametrize("messages,max_tokens", [(USER, 100), (LONG, None)])
def test_langchain_raises_its_context_overflow_error(locked, messages, max_tokens):
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.exceptions import ContextOverflowError

    llm = langchain_openai.ChatOpenAI(model=MODEL, base_url=locked.url + "/v1", api_key=KEY, max_retries=0,
                                      max_tokens=max_tokens, timeout=60)
    with pytest.raises(ContextOverflowError) as err:
        llm.invoke([(m["role"], m["content"]) for m in messages])
    assert "maximum context length" in str(err.value)


@pytest.fixture(scope="module")
def litellm():
    # The bundled price list, not the one litellm would fetch from the network at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return pytest.importorskip("litellm")


@pytest.mark.parametrize("messages,max_tokens", [(USER, 100), (LONG, None)])
def test_litellm_raises_context_window_exceeded(locked, litellm, messages, max_tokens):
    with pytest.raises(litellm.ContextWindowExceededError) as err:
        litellm.completion(model="openai/" + MODEL, api_base=locked.url + "/v1", api_key=KEY, messages=messages,
                           max_tokens=max_tokens, num_retries=0, max_retries=0, timeout=60)
    assert "maximum context length" in str(err.value)


def test_litellm_recognises_the_completions_wording(locked, litellm):
    with pytest.raises(litellm.ContextWindowExceededError):
        litellm.text_completion(model="text-completion-openai/" + MODEL, api_base=locked.url + "/v1", api_key=KEY,
                                prompt="Hello", max_tokens=100, num_retries=0, max_retries=0, timeout=60)



def test_anthropics_dialect_says_it_in_anthropics_words(http, locked):
    """/v1/messages: Anthropic's sentences (litellm and LangChain match "prompt is too long")."""
    def send(messages, max_tokens):
        body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens}
        n = http.post(locked.url + "/v1/messages/count_tokens", json={"model": MODEL, "messages": messages},
                      headers=AUTH).json()["input_tokens"]
        r = http.post(locked.url + "/v1/messages", json=body, headers=AUTH)
        assert r.status_code == 400, r.text
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
        return n, r.json()["error"]["message"]

    n, message = send(LONG, 5)
    assert message == f"prompt is too long: {n} tokens > {MAX_LEN} maximum"
    n, message = send(USER, 100)
    assert message == (f"input length and `max_tokens` exceed context limit: {n} + 100 > {MAX_LEN}, "
                       "decrease input length or `max_tokens` and try again")
