"""The limits of the locked server (an API key, a small body limit, a short context): prompts and
max_tokens beyond the context, missing or wrong keys on every API route, bodies over the limit
(chunked too), each with its error in both shapes (support/error_shapes.py).

Every bad request must be the client's error: the `http` fixture fails a test that got a 5xx.
"""

from __future__ import annotations

import json

import pytest

from support.error_shapes import (
    AUTH,
    BODY,
    CHAT_PATHS,
    KEY,
    MAX_BODY,
    MAX_LEN,
    MODEL,
    USER,
    both,
    hub_error,
    openai_error,
    post_json,
)


# ---- the context ---------------------------------------------------------------------------------------

def test_prompt_longer_than_the_context(http, locked):
    messages = [{"role": "user", "content": "word " * 100}]
    n = http.post(locked.url + "/tokenize", json={"messages": messages}, headers=AUTH).json()["count"]
    assert n > MAX_LEN
    send = post_json(http, locked, {"model": MODEL, "messages": messages}, AUTH)
    both(send, 400, "invalid_params", param="messages", code="context_length_exceeded",
         contains=(str(n), str(MAX_LEN)))


def test_max_tokens_beyond_the_context(http, locked):
    n = http.post(locked.url + "/tokenize", json={"messages": USER}, headers=AUTH).json()["count"]
    send = post_json(http, locked, {"model": MODEL, "messages": USER, "max_tokens": 100}, AUTH)
    both(send, 400, "invalid_params", param="max_tokens", code="context_length_exceeded",
         contains=(str(n), "100", str(MAX_LEN)))
    # max_completion_tokens is checked the same way.
    r = http.post(locked.url + CHAT_PATHS[0], json={"model": MODEL, "messages": USER,
                                                     "max_completion_tokens": 100}, headers=AUTH)
    openai_error(r, 400, code="context_length_exceeded", contains=("100", str(MAX_LEN)))


def test_without_max_tokens_the_answer_fills_the_context(http, locked):
    # ignore_eos: the random demo can sample its end token by chance (one run in a few hundred),
    # and this is about the length limit, not about where the model would stop.
    r = http.post(locked.url + CHAT_PATHS[0], json={"model": MODEL, "messages": USER, "ignore_eos": True},
                  headers=AUTH)
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert usage["total_tokens"] == MAX_LEN and r.json()["choices"][0]["finish_reason"] == "length"


def test_completions_prompt_too_long_names_prompt(http, locked):
    """/v1/completions has no `messages`: the error must name `prompt`."""
    r = http.post(locked.url + "/v1/completions", json={"model": MODEL, "prompt": "word " * 100}, headers=AUTH)
    openai_error(r, 400, code="context_length_exceeded", param="prompt", contains=(str(MAX_LEN),))


# ---- authentication ------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret"},
                                     {"Authorization": "Basic c2VjcmV0"},
                                     {"x-api-key": "wrong"}])
def test_missing_or_wrong_key(http, locked, headers):
    both(post_json(http, locked, BODY, headers), 401, "unauthenticated", param=None, code="invalid_api_key")


@pytest.mark.parametrize("method,path", [("GET", "/v1/models"), ("GET", "/api/ai/models"),
                                         ("GET", f"/v1/models/{MODEL}"), ("GET", f"/api/ai/models/{MODEL}"),
                                         ("POST", "/v1/completions"), ("POST", "/tokenize"),
                                         ("GET", "/api/ai/generations")])
def test_every_api_route_needs_the_key(http, locked, method, path):
    body = {"prompt": "x", "model": MODEL} if method == "POST" else None
    r = http.request(method, locked.url + path, json=body)
    if path.startswith("/api/ai"):
        hub_error(r, 401, "unauthenticated")
    else:
        openai_error(r, 401, code="invalid_api_key")
    r = http.request(method, locked.url + path, json=body, headers=AUTH)
    assert r.status_code == 200, r.text


def test_the_right_key_is_accepted(http, locked):
    for path in CHAT_PATHS:
        for headers in (AUTH, {"Authorization": f"bearer {KEY}"}, {"x-api-key": KEY}):
            r = http.post(locked.url + path, json=BODY, headers=headers)
            assert r.status_code == 200, (path, headers, r.text)
            assert r.json()["usage"]["completion_tokens"] == 2


def test_health_needs_no_key(http, locked):
    assert http.get(locked.url + "/health").status_code == 200


# ---- body size ---------------------------------------------------------------------------------------------

def _big_body() -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x" * (MAX_BODY * 2)}]}
    assert len(json.dumps(body)) > MAX_BODY
    return body


def test_body_over_the_limit(http, locked):
    both(post_json(http, locked, _big_body(), AUTH), 413, "invalid_params", code="request_too_large",
         contains=(str(MAX_BODY),))


def test_body_over_the_limit_without_auth_is_still_413_or_401(http, locked):
    r = http.post(locked.url + CHAT_PATHS[0], json=_big_body())
    assert r.status_code in (401, 413)


def test_body_just_under_the_limit_is_accepted(http, locked):
    body = {"model": MODEL, "messages": [{"role": "user", "content": ""}], "max_tokens": 1}
    pad = MAX_BODY - len(json.dumps(body)) - 10
    body["user"] = "u" * min(pad, 256)
    assert len(json.dumps(body)) <= MAX_BODY
    r = http.post(locked.url + CHAT_PATHS[0], json=body, headers=AUTH)
    assert r.status_code == 200, r.text


def test_chunked_body_over_the_limit_is_413(http, locked):
    """Without a Content-Length the limit is enforced as the body streams in: still a 413."""
    data = json.dumps(_big_body()).encode()

    def chunks():
        for i in range(0, len(data), 500):
            yield data[i:i + 500]

    for path in CHAT_PATHS:
        r = http.post(locked.url + path, content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
        assert "content-length" not in {k.lower() for k in r.request.headers}
        if path.startswith("/api/ai"):
            hub_error(r, 413, "invalid_params", contains=(str(MAX_BODY),))
        else:
            openai_error(r, 413, code="request_too_large", contains=(str(MAX_BODY),))
