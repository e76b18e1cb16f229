"""Unknown paths and wrong methods, /v1/completions refusals, /tokenize and /detokenize and their
errors; then the error tests' last check, that both servers still answer and none of their
responses or logs shows a server error. That test holds on its own, and this file runs after the
other test_errors_*.py files (which share its servers), as it ran last when they were one file.

Every bad request must be the client's error: the `http` fixture fails a test that got a 5xx.
"""

from __future__ import annotations

import httpx
import pytest

from support.error_shapes import AUTH, BODY, CHAT_PATHS, MODEL, USER, hub_error, openai_error


@pytest.fixture(scope="module")
def server(errors_server):
    """The error tests' open server (tests/e2e/conftest.py), shared by the test_errors_*.py files."""
    return errors_server


# ---- routing -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/nope", "/v1/chat/completion", "/v2/chat/completions", "/nope"])
def test_unknown_path_openai_shape(http, server, path):
    openai_error(http.post(server.url + path, json=BODY), 404, code="not_found", contains=(path,))


@pytest.mark.parametrize("path", ["/api/ai/nope", "/api/ai/chat/completion"])
def test_unknown_path_hub_shape(http, server, path):
    hub_error(http.post(server.url + path, json=BODY), 404, "resource_not_found", contains=(path,))


@pytest.mark.parametrize("method,path", [("GET", "/v1/chat/completions"), ("GET", "/api/ai/chat/completions"),
                                         ("PUT", "/v1/chat/completions"), ("DELETE", "/v1/models"),
                                         ("POST", "/api/ai/models"), ("GET", "/v1/completions"),
                                         ("GET", "/tokenize")])
def test_wrong_method(http, server, method, path):
    r = http.request(method, server.url + path)
    if path.startswith("/api/ai"):
        hub_error(r, 405, "invalid_params", contains=(method,))
    else:
        openai_error(r, 405, code="method_not_allowed", contains=(method,))


# ---- /v1/completions refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body,param", [
    ({"prompt": []}, "prompt"),
    ({"prompt": [[]]}, "prompt"),
    ({"prompt": [40000]}, "prompt"),
    ({"prompt": "x", "best_of": 3}, "best_of"),
    ({"prompt": "x", "suffix": "y"}, "suffix"),
    ({"prompt": "x", "logprobs": 6}, "logprobs"),
    ({"prompt": "x", "echo": "yes please"}, "echo"),
    ({"prompt": "x", "messages": USER}, "messages"),
    ({"prompt": ["x"] * 33}, "prompt"),
])
def test_completions_errors(http, server, body, param):
    r = http.post(server.url + "/v1/completions", json={"model": MODEL, **body})
    err = openai_error(r, 400)
    assert err["param"] == param or err["param"].startswith(param + "."), err


# ---- /tokenize and /detokenize --------------------------------------------------------------------------------

def test_tokenize_and_detokenize(http, server):
    r = http.post(server.url + "/tokenize", json={"prompt": "Hello world"})
    assert r.status_code == 200
    body = r.json()
    assert body["tokens"][0] == 1 and body["count"] == len(body["tokens"]) and body["max_model_len"] > 0
    bare = http.post(server.url + "/tokenize", json={"prompt": "Hello world", "add_special_tokens": False}).json()
    assert bare["tokens"] == body["tokens"][1:]
    back = http.post(server.url + "/detokenize", json={"tokens": bare["tokens"]})
    assert back.status_code == 200 and back.json()["prompt"] == "Hello world"
    with_model = http.post(server.url + "/tokenize", json={"prompt": "Hello world", "model": MODEL}).json()
    assert with_model["tokens"] == body["tokens"]


def test_tokenize_messages_counts_the_chat_prompt(http, server):
    tokens = http.post(server.url + "/tokenize", json={"messages": USER}).json()["tokens"]
    assert tokens[0] == 1 and 3 in tokens and 4 in tokens  # BOS, [INST], [/INST]
    r = http.post(server.url + CHAT_PATHS[0], json=BODY)
    assert r.json()["usage"]["prompt_tokens"] == len(tokens)


@pytest.mark.parametrize("path,body,status,param", [
    ("/tokenize", {}, 400, "prompt"),
    ("/tokenize", {"prompt": "a", "messages": USER}, 400, "prompt"),
    ("/tokenize", {"prompt": 5}, 400, "prompt"),
    ("/tokenize", {"prompt": "a", "model": "gpt-4"}, 404, "model"),
    ("/tokenize", {"messages": [{"role": "assistant", "content": "x"}]}, 400, "messages"),
    ("/tokenize", {"prompt": "a", "colour": 1}, 400, "colour"),
    ("/detokenize", {"tokens": [40000]}, 400, "tokens"),
    ("/detokenize", {"tokens": [32768]}, 400, "tokens"),
    ("/detokenize", {"tokens": [-1]}, 400, "tokens"),
    ("/detokenize", {"tokens": "abc"}, 400, "tokens"),
    ("/detokenize", {}, 400, "tokens"),
    ("/detokenize", {"tokens": [1], "model": "gpt-4"}, 404, "model"),
])
def test_tokenizer_endpoint_errors(http, server, path, body, status, param):
    err = openai_error(http.post(server.url + path, json=body), status)
    assert err["param"] == param or err["param"].startswith(param + "."), err


def test_detokenize_names_the_bad_id(http, server):
    err = openai_error(http.post(server.url + "/detokenize", json={"tokens": [5, 40000]}), 400)
    assert "40000" in err["message"] and "32768" in err["message"]


# ---- whatever ran before -------------------------------------------------------------------------------------

def test_still_serving_and_no_server_errors(http, server, locked):
    """Holds on its own as after every test above: the servers answer, and their own metrics and
    logs show no 5xx and no traceback."""
    for path in CHAT_PATHS:
        r = http.post(server.url + path, json={**BODY, "max_tokens": 5})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
        r = http.post(locked.url + path, json={**BODY, "max_tokens": 5}, headers=AUTH)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
    with http.stream("POST", server.url + CHAT_PATHS[0], json={**BODY, "stream": True}) as r:
        assert r.status_code == 200 and [x for x in r.iter_lines() if x][-1] == "data: [DONE]"
    for proc in (server, locked):
        metrics = httpx.get(proc.url + "/metrics").text.splitlines()
        # /health answers 503 while the model loads; nothing else may have answered 5xx.
        assert [line for line in metrics if 'status="5' in line and 'route="/health"' not in line] == []
        assert "Traceback" not in proc.log()
