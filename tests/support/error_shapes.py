"""The two error shapes of the API, and senders for the error tests (tests/e2e/test_errors_*.py).

/v1/* answers in the OpenAI shape:   {"error": {"message", "type", "param", "code"}}
/api/ai/* answers in the hub's:      {"error": {"type", "title", "detail"}, "status": "error",
                                      "status_message": TYPE}
with TYPE one of unauthenticated, invalid_params, resource_not_found, unknown_error.
"""

from __future__ import annotations

import httpx

MODEL = "open-mistral-7b"
HUB_TYPES = {"unauthenticated", "invalid_params", "resource_not_found", "unknown_error"}
CHAT_PATHS = ["/v1/chat/completions", "/api/ai/chat/completions"]
USER = [{"role": "user", "content": "Hello"}]
BODY = {"model": MODEL, "messages": USER, "max_tokens": 2}
KEY = "secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_BODY = 2000
MAX_LEN = 64


def openai_error(r: httpx.Response, status: int, *, param=..., code=..., contains: tuple[str, ...] = ()) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == ("invalid_request_error" if status < 500 and status != 429 else err["type"])
    if param is not ...:
        assert err["param"] == param, err
    if code is not ...:
        assert err["code"] == code, err
    for text in contains:
        assert text in err["message"], (text, err["message"])
    return err


def hub_error(r: httpx.Response, status: int, kind: str, *, contains: tuple[str, ...] = ()) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "status", "status_message"}, body
    assert body["status"] == "error"
    assert body["status_message"] == kind and kind in HUB_TYPES
    err = body["error"]
    assert set(err) == {"type", "title", "detail"}, err
    assert err["type"] == kind
    assert isinstance(err["title"], str) and err["title"]
    assert isinstance(err["detail"], str) and err["detail"]
    for text in contains:
        assert text in err["detail"], (text, err["detail"])
    return err


def both(send, status: int, kind: str, *, param=..., code=..., contains: tuple[str, ...] = ()) -> None:
    """`send(path)` on the chat endpoint of each family; both refuse it alike."""
    err = openai_error(send(CHAT_PATHS[0]), status, param=param, code=code, contains=contains)
    detail = hub_error(send(CHAT_PATHS[1]), status, kind, contains=contains)["detail"]
    assert detail == err["message"]


def post_raw(http, server, content: bytes | str, content_type: str = "application/json"):
    return lambda path: http.post(server.url + path, content=content, headers={"Content-Type": content_type})


def post_json(http, server, body, headers=None):
    return lambda path: http.post(server.url + path, json=body, headers=headers)
