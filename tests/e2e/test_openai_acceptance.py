"""Requests that OpenAI accepts are accepted, on a live server with the official `openai` package:
the parameters that change nothing here, a conversation that carries back an answer as the SDK
returns it (`message.model_dump()`, nulls and all), and explicit nulls for the defaults. What
cannot be honoured is refused with `unsupported_parameter` (a parameter) or `unsupported_content`
(an image, audio or a file), naming it and saying why; the exact bodies are checked with httpx.

The demo model's greedy answer is deterministic, so "changes nothing" is checked by the answer:
the same text, and the same prompt tokens, with the parameter as without it.
"""

from __future__ import annotations

import pytest
from openai import BadRequestError

from support.error_shapes import CHAT_PATHS, hub_error, openai_error
from support.openai_helpers import MESSAGES, MODEL, chat, greedy

NO_EFFECT = {
    "store": True, "metadata": {"session": "abc"}, "service_tier": "flex", "prompt_cache_key": "conversation-1",
    "safety_identifier": "user-hash", "modalities": ["text"], "user": "user-7", "verbosity": "low",
    "reasoning_effort": "none", "prompt_cache_retention": "24h",
}
REFUSED = {
    "audio": ({"voice": "alloy", "format": "wav"}, "text only"),
    "prediction": ({"type": "content", "content": "def f(): pass"}, "predicted outputs"),
    "web_search_options": ({}, "web search"),
    "reasoning_effort": ("high", "does not reason"),
    "functions": ([{"name": "f", "parameters": {"type": "object"}}], "tools"),
    "function_call": ("auto", "tool_choice"),
    "modalities": (["text", "audio"], "text only"),
    "moderation": ({"model": "omni-moderation-latest"}, "moderation"),
}
BODY = {"model": MODEL, "messages": MESSAGES, "max_tokens": 6, "temperature": 0}


@pytest.fixture(scope="module")
def server(openai_server):
    """The `openai` client tests' open server (tests/e2e/conftest.py)."""
    return openai_server


# ---- accepted without effect ----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(NO_EFFECT))
def test_a_parameter_without_effect_is_accepted_and_changes_nothing(client, name):
    plain = chat(client, temperature=0, max_tokens=6)
    r = chat(client, temperature=0, max_tokens=6, **{name: NO_EFFECT[name]})
    assert r.choices[0].message.content == plain.choices[0].message.content
    assert r.usage.prompt_tokens == plain.usage.prompt_tokens


def test_all_of_them_at_once_and_streamed(client):
    plain = greedy(client, max_tokens=6)
    stream = chat(client, temperature=0, max_tokens=6, stream=True,
                  stream_options={"include_usage": True, "include_obfuscation": False}, **NO_EFFECT)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == plain


def test_prompt_cache_options_and_breakpoints_go_through_extra_body(client, server, http):
    plain = greedy(client, max_tokens=6)
    parts = [{"type": "text", "text": MESSAGES[0]["content"], "prompt_cache_breakpoint": {"mode": "explicit"}}]
    r = http.post(server.url + "/v1/chat/completions", json={
        **BODY, "messages": [{"role": "user", "content": parts}], "prompt_cache_options": {"mode": "explicit"}})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == plain


# ---- a conversation carries back the SDK's own message ---------------------------------------------

def test_an_answer_as_the_sdk_dumps_it_continues_the_conversation(client):
    first = chat(client, temperature=0, max_tokens=6).choices[0].message
    dumped = first.model_dump()
    assert {"refusal", "audio", "function_call", "annotations"} <= set(dumped)  # the nulls that came back
    follow = {"role": "user", "content": "And then?"}
    carried = chat(client, temperature=0, max_tokens=6, messages=[*MESSAGES, dumped, follow])
    written = chat(client, temperature=0, max_tokens=6,
                   messages=[*MESSAGES, {"role": "assistant", "content": first.content}, follow])
    assert carried.usage.prompt_tokens == written.usage.prompt_tokens > 0
    assert carried.choices[0].message.content == written.choices[0].message.content


def test_an_assistant_message_with_annotations_and_vllms_reasoning_is_accepted(server, http):
    answer = {"role": "assistant", "content": "A cat.", "refusal": None, "audio": None, "function_call": None,
              "tool_calls": None, "reasoning_content": None, "annotations": [
                  {"type": "url_citation", "url_citation": {"url": "https://e.x", "title": "t",
                                                           "start_index": 0, "end_index": 3}}]}
    r = http.post(server.url + "/v1/chat/completions",
                  json={**BODY, "messages": [*MESSAGES, answer, {"role": "user", "content": "More."}]})
    assert r.status_code == 200, r.text


def test_a_refusal_is_part_of_the_conversation_as_the_answers_text(client):
    refused = {"role": "assistant", "content": None, "refusal": "I cannot help with that."}
    as_text = {"role": "assistant", "content": "I cannot help with that."}
    follow = {"role": "user", "content": "Why?"}
    a = chat(client, temperature=0, max_tokens=6, messages=[*MESSAGES, refused, follow])
    b = chat(client, temperature=0, max_tokens=6, messages=[*MESSAGES, as_text, follow])
    assert a.usage.prompt_tokens == b.usage.prompt_tokens
    assert a.choices[0].message.content == b.choices[0].message.content


@pytest.mark.parametrize("role", ["system", "user", "assistant"])
def test_text_parts_keep_working(client, role):
    parts = [{"type": "text", "text": "Be brief. "}, {"type": "text", "text": "Tell me a story."}]
    messages = {"system": [{"role": "system", "content": parts}, *MESSAGES],
                "user": [{"role": "user", "content": parts}],
                "assistant": [*MESSAGES, {"role": "assistant", "content": parts}, *MESSAGES]}[role]
    assert chat(client, temperature=0, max_tokens=4, messages=messages).choices[0].message.content


# ---- explicit nulls are the defaults ----------------------------------------------------------------

NULLABLE = ["temperature", "top_p", "n", "stop", "stream", "stream_options", "presence_penalty", "frequency_penalty",
            "logit_bias", "logprobs", "top_logprobs", "max_completion_tokens", "user", "tools", "tool_choice",
            "parallel_tool_calls", "response_format", "store", "metadata", "service_tier", "audio", "prediction",
            "modalities", "reasoning_effort", "verbosity", "web_search_options", "prompt_cache_key",
            "safety_identifier", "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos"]


def test_null_for_every_nullable_parameter_is_its_default(server, http):
    # Sampled (temperature 1 by default) with a seed: a null temperature read as 0 would differ.
    base = {"model": MODEL, "messages": MESSAGES, "max_tokens": 8, "seed": 11}
    plain = http.post(server.url + "/v1/chat/completions", json=base)
    nulls = http.post(server.url + "/v1/chat/completions", json={**base, **dict.fromkeys(NULLABLE)})
    assert plain.status_code == nulls.status_code == 200, nulls.text
    assert nulls.json()["choices"] == plain.json()["choices"]
    greedy_text = http.post(server.url + "/v1/chat/completions", json={**base, "temperature": 0}).json()
    assert plain.json()["choices"][0]["message"]["content"] != greedy_text["choices"][0]["message"]["content"]


def test_null_through_the_sdks_extra_body(client):
    sampled = chat(client, seed=5, max_tokens=8).choices[0].message.content
    nulls = chat(client, seed=5, max_tokens=8, extra_body={"temperature": None, "top_p": None, "n": None})
    assert nulls.choices[0].message.content == sampled and len(nulls.choices) == 1


def test_null_in_a_message_and_in_legacy_completions(server, http):
    message = {"role": "user", "content": "Hi", "name": None, "tool_calls": None, "tool_call_id": None}
    r = http.post(server.url + "/v1/chat/completions", json={**BODY, "messages": [message]})
    assert r.status_code == 200, r.text
    r = http.post(server.url + "/v1/completions", json={"model": MODEL, "prompt": "Once", "max_tokens": 3,
                                                         "temperature": None, "echo": None, "suffix": None,
                                                         "best_of": None, "logprobs": None, "n": None})
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 1


# ---- refused, saying why ----------------------------------------------------------------------------

def test_audio_is_refused_with_the_exact_body(server, http):
    r = http.post(server.url + "/v1/chat/completions", json={**BODY, "audio": {"voice": "alloy", "format": "wav"}})
    assert r.status_code == 400
    assert r.json() == {"error": {"message": "audio is not supported: this model writes text only",
                                  "type": "invalid_request_error", "param": "audio", "code": "unsupported_parameter"}}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_parameter_that_cannot_be_honoured_is_refused_naming_it(server, http, name):
    value, why = REFUSED[name]
    err = openai_error(http.post(server.url + CHAT_PATHS[0], json={**BODY, name: value}), 400,
                       param=name, code="unsupported_parameter", contains=("not supported", why))
    hub = hub_error(http.post(server.url + CHAT_PATHS[1], json={**BODY, name: value}), 400, "invalid_params")
    assert hub["detail"] == err["message"]


def test_the_sdk_sees_an_unsupported_parameter(client):
    with pytest.raises(BadRequestError) as err:
        chat(client, audio={"voice": "alloy", "format": "wav"})
    assert err.value.code == "unsupported_parameter" and err.value.param == "audio"


def test_a_name_openai_does_not_know_is_still_unrecognized(server, http):
    openai_error(http.post(server.url + "/v1/chat/completions", json={**BODY, "max_new_tokens": 5}), 400,
                 param="max_new_tokens", code=None, contains=("Unrecognized request argument supplied",))


def test_suffix_on_completions_is_refused_saying_why(client):
    with pytest.raises(BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="def add(a, b):", suffix="    return c", max_tokens=4)
    assert err.value.code == "unsupported_parameter" and err.value.param == "suffix"
    assert "fill-in-the-middle" in err.value.message


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    {"type": "file", "file": {"file_id": "file-abc"}},
], ids=lambda p: p["type"])
def test_a_part_that_is_not_text_gets_a_text_only_400(server, http, part):
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}]
    r = http.post(server.url + "/v1/chat/completions", json={**BODY, "messages": messages})
    err = openai_error(r, 400, param="messages.0.content.1", code="unsupported_content",
                       contains=("messages.0.content.1", part["type"], "this model takes text only"))
    assert "other places" not in err["message"] and "valid string" not in err["message"]


def test_an_earlier_answers_audio_is_refused_saying_what_to_send(server, http):
    answer = {"role": "assistant", "content": None, "audio": {"id": "audio_abc"}}
    r = http.post(server.url + "/v1/chat/completions", json={**BODY, "messages": [*MESSAGES, answer, *MESSAGES]})
    openai_error(r, 400, param="messages.1.audio", code="unsupported_parameter", contains=("transcript",))


# ---- the other dialects -----------------------------------------------------------------------------

def test_anthropic_nulls_are_defaults_and_images_get_a_text_only_400(server, http):
    body = {"model": MODEL, "max_tokens": 4, "messages": MESSAGES, "temperature": None, "top_p": None,
            "top_k": None, "stop_sequences": None, "system": None, "stream": None, "metadata": None}
    r = http.post(server.url + "/v1/messages", json=body)
    assert r.status_code == 200, r.text
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    r = http.post(server.url + "/v1/messages", json={**body, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]})
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert "text only" in r.json()["error"]["message"]


def test_ollama_nulls_are_defaults_and_images_get_a_text_only_400(server, http):
    body = {"model": MODEL, "messages": MESSAGES, "stream": False, "options": {"temperature": None, "num_predict": 4},
            "format": None, "tools": None}
    r = http.post(server.url + "/api/chat", json=body)
    assert r.status_code == 200, r.text
    r = http.post(server.url + "/api/chat", json={**body, "messages": [{**MESSAGES[0], "images": ["iVBORw0KGgo="]}]})
    assert r.status_code == 400 and "text only" in r.json()["error"]
