"""Requests for a model that is not served (404, on every endpoint, streaming or not), and
conversations the chat template cannot render or that are not valid messages (400), in both
error shapes (support/error_shapes.py).

Every bad request must be the client's error: the `http` fixture fails a test that got a 5xx.
"""

from __future__ import annotations

import pytest

from support.error_shapes import BODY, CHAT_PATHS, both, hub_error, openai_error, post_json


@pytest.fixture(scope="module")
def server(errors_server):
    """The error tests' open server (tests/e2e/conftest.py), shared by the test_errors_*.py files."""
    return errors_server


# ---- the model -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gpt-4", "mistral-large-latest", "open-mistral-7b-v2"])
def test_unknown_model(http, server, name):
    both(post_json(http, server, {**BODY, "model": name}), 404, "resource_not_found", param="model",
         code="model_not_found", contains=(f"Model not found: {name}",))


def test_unknown_model_when_streaming_is_a_json_error(http, server):
    """Refused before the stream starts: a plain JSON error, not an event stream."""
    both(post_json(http, server, {**BODY, "model": "gpt-4", "stream": True}), 404, "resource_not_found",
         code="model_not_found", contains=("Model not found: gpt-4",))


def test_unknown_model_details(http, server):
    err = openai_error(http.get(server.url + "/v1/models/gpt-4"), 404, code="model_not_found")
    assert err["message"] == "Model not found: gpt-4"
    detail = hub_error(http.get(server.url + "/api/ai/models/gpt-4"), 404, "resource_not_found")["detail"]
    assert detail == "Model not found: gpt-4"


def test_unknown_model_on_completions(http, server):
    openai_error(http.post(server.url + "/v1/completions", json={"model": "gpt-4", "prompt": "x"}), 404,
                 code="model_not_found", contains=("Model not found: gpt-4",))


# ---- the conversation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("messages,contains", [
    ([{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Hello"}], "start"),
    ([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}], "last message"),
    ([{"role": "user", "content": None}], "content"),
    ([{"role": "tool", "content": "42"}], "tool_call_id"),
])
def test_chat_template_errors(http, server, messages, contains):
    both(post_json(http, server, {**BODY, "messages": messages}), 400, "invalid_params", param="messages",
         code="invalid_messages", contains=(contains,))


@pytest.mark.parametrize("messages", [[], [{"role": "robot", "content": "hi"}], [{"content": "hi"}]])
def test_invalid_messages(http, server, messages):
    err = openai_error(http.post(server.url + CHAT_PATHS[0], json={**BODY, "messages": messages}), 400)
    assert err["param"].startswith("messages")
    detail = hub_error(http.post(server.url + CHAT_PATHS[1], json={**BODY, "messages": messages}), 400,
                       "invalid_params")["detail"]
    # The hub's own sentence for an empty list (test_hub_api.py); the server's, naming the field, otherwise.
    assert detail == "Messages array cannot be empty" if messages == [] else "messages" in detail
