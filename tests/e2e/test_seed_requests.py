"""The hub's model page for open-mistral-7b, replayed against our server with only the host changed.

The three example bodies (Minimal, Basic parameters, All parameters) are copied exactly from
/work/shared/seed/model-page-open-mistral-7b.md, and sent the way its cURL lines send them: plain
HTTP, a JSON body, `Authorization: Bearer $OXEN_API_KEY` (any value: the server is open). The
model-details request must give the hub's full model object, whose json_request_schema is the
contract: the seed bodies validate against it, and bodies that violate it are refused.
"""

from __future__ import annotations

import concurrent.futures as cf
import json

import httpx
import jsonschema
import pytest

MODEL = "open-mistral-7b"
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer anything"}

# Exactly as on the model page.
MINIMAL = {
    "model": "open-mistral-7b",
    "messages": [
        {
            "role": "user",
            "content": "Hello, what can you do?"
        }
    ]
}
BASIC = {
    "model": "open-mistral-7b",
    "messages": [
        {
            "role": "user",
            "content": "Hello, what can you do?"
        }
    ],
    "temperature": 0.7,
    "max_tokens": 1024,
    "stream": False
}
ALL = {
    "model": "open-mistral-7b",
    "messages": [
        {
            "role": "user",
            "content": "Hello, what can you do?"
        }
    ],
    "temperature": 0.7,
    "max_tokens": 1024,
    "stream": False,
    "top_p": 1.0
}
SEED_BODIES = {"minimal": MINIMAL, "basic": BASIC, "all": ALL}
CHAT_PATHS = ["/api/ai/chat/completions", "/v1/chat/completions"]
# The demo caps an answer that sets no max_tokens (server/generation.py DEMO_MAX_TOKENS).
DEMO_DEFAULT_CAP = 512

MODEL_FIELDS = ["id", "object", "created", "owned_by", "display_name", "description", "summary", "model_type",
                "endpoint", "capabilities", "pricing", "fine_tuning", "deployments", "developer", "source_model",
                "image_url", "released_at", "parameter_count", "context_length", "mixture_of_experts", "quantization",
                "request_schema", "json_request_schema"]


@pytest.fixture(scope="module")
def seed_responses(server) -> dict[tuple[str, str], httpx.Response]:
    """All six (path, body) pairs, sent at once: the engine batches them, so the 1024-token
    answers take the time of one."""
    jobs = [(path, name) for path in CHAT_PATHS for name in SEED_BODIES]

    def send(job):
        path, name = job
        return httpx.post(server.url + path, json=SEED_BODIES[name], headers=HEADERS, timeout=600)

    with cf.ThreadPoolExecutor(len(jobs)) as pool:
        return dict(zip(jobs, pool.map(send, jobs)))


@pytest.fixture(scope="module")
def model_object(server) -> dict:
    r = httpx.get(server.url + "/api/ai/models/" + MODEL, headers={"Authorization": "Bearer anything"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def validator(model_object) -> jsonschema.Draft202012Validator:
    schema = model_object["json_request_schema"]
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


# ---- the three example requests ------------------------------------------------------------------

@pytest.mark.parametrize("path", CHAT_PATHS)
@pytest.mark.parametrize("name", list(SEED_BODIES))
def test_seed_body_gives_a_chat_completion(seed_responses, path, name):
    r = seed_responses[(path, name)]
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) >= {"id", "object", "created", "model", "choices", "usage", "system_fingerprint"}
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == MODEL
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # max_tokens is honoured: 1024 where the body says so, the demo's default cap otherwise.
    limit = SEED_BODIES[name].get("max_tokens", DEMO_DEFAULT_CAP)
    assert 1 <= usage["completion_tokens"] <= limit
    if choice["finish_reason"] == "length":
        assert usage["completion_tokens"] == limit


def test_seed_bodies_same_prompt_on_both_paths(seed_responses):
    counts = {r.json()["usage"]["prompt_tokens"] for r in seed_responses.values()}
    assert len(counts) == 1


def test_seed_body_streamed(server):
    """The same request with stream true (the page's bodies set stream false): SSE chunks that
    end with data: [DONE]."""
    body = {**BASIC, "stream": True, "max_tokens": 8}
    with httpx.stream("POST", server.url + "/api/ai/chat/completions", json=body, headers=HEADERS) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


# ---- the model-details request ----------------------------------------------------------------------

def test_model_object_has_every_hub_field(model_object):
    m = model_object
    missing = [f for f in MODEL_FIELDS if f not in m]
    assert not missing, missing
    assert m["id"] == MODEL
    assert m["object"] == "model"
    assert isinstance(m["created"], int) and m["created"] > 1_600_000_000
    assert isinstance(m["owned_by"], str) and m["owned_by"]
    for key in ("display_name", "description", "summary", "model_type"):
        assert isinstance(m[key], str) and m[key], key
    assert m["model_type"] in ("base", "custom")
    assert m["endpoint"] == "/chat/completions"  # the hub's, relative to /api/ai
    assert m["capabilities"]["input"] == ["text"] and m["capabilities"]["output"] == ["text"]
    assert m["pricing"]["method"] == "token"
    assert m["pricing"]["input_cost_per_token"] == m["pricing"]["output_cost_per_token"] == 0
    assert isinstance(m["deployments"], list) and m["deployments"]
    assert all(isinstance(d.get("status"), str) and d["status"] for d in m["deployments"])
    assert isinstance(m["developer"]["name"], str) and m["developer"]["name"]
    assert isinstance(m["developer"]["logo"], str) and m["developer"]["logo"]
    assert isinstance(m["parameter_count"], int) and m["parameter_count"] > 0
    assert isinstance(m["context_length"], int) and m["context_length"] > 0
    assert isinstance(m["mixture_of_experts"], bool) and m["mixture_of_experts"] is False
    assert isinstance(m["quantization"], str)
    assert m["request_schema"] == m["json_request_schema"]
    assert isinstance(m["json_request_schema"], dict) and m["json_request_schema"]["type"] == "object"


def test_model_object_says_it_is_the_demo(model_object):
    assert model_object["demo"] is True
    assert "demo" in model_object["display_name"].lower()
    assert "random" in (model_object["description"] + model_object["summary"]).lower()


def test_context_length_matches_the_server(server, model_object):
    tokenize = httpx.post(server.url + "/tokenize", json={"prompt": "x"}).json()
    assert model_object["context_length"] == tokenize["max_model_len"]


def test_developer_logo_is_served(server, model_object):
    logo = model_object["developer"]["logo"]
    url = logo if logo.startswith("http") else server.url + logo
    r = httpx.get(url)
    assert r.status_code == 200 and r.content


def test_models_list_shape(server, model_object):
    r = httpx.get(server.url + "/api/ai/models", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [MODEL]
    assert body["data"][0] == model_object


def test_v1_model_object_is_the_same(server, model_object):
    r = httpx.get(server.url + "/v1/models/" + MODEL)
    assert r.status_code == 200
    m = r.json()
    assert [f for f in MODEL_FIELDS if f not in m] == []
    assert m == model_object
    listed = httpx.get(server.url + "/v1/models").json()
    assert listed["object"] == "list" and listed["data"] == [model_object]


# ---- the published schema is the contract ------------------------------------------------------------

@pytest.mark.parametrize("name", list(SEED_BODIES))
def test_seed_bodies_validate_against_the_schema(validator, name):
    validator.validate(SEED_BODIES[name])


def test_schema_pins_the_model(validator):
    assert not validator.is_valid({**MINIMAL, "model": "gpt-4"})
    assert validator.is_valid({**MINIMAL, "stop": ["a", "b"], "logit_bias": {"6023": 5}, "n": 2,
                               "stream_options": {"include_usage": True}, "seed": 3})


def _messages(*roles_and_texts):
    return [{"role": r, "content": t} for r, t in roles_and_texts]


INVALID = {
    "temperature 3": {**MINIMAL, "temperature": 3},
    "unknown field": {**MINIMAL, "colour": "blue"},
    "top_p 0": {**MINIMAL, "top_p": 0},
    "n 0": {**MINIMAL, "n": 0},
    "five stop strings": {**MINIMAL, "stop": ["a", "b", "c", "d", "e"]},
    "logit_bias key abc": {**MINIMAL, "logit_bias": {"abc": 1}},
    "logit_bias value 200": {**MINIMAL, "logit_bias": {"6023": 200}},
    "messages empty": {**MINIMAL, "messages": []},
    "role robot": {**MINIMAL, "messages": _messages(("robot", "hi"))},
    "message without role": {**MINIMAL, "messages": [{"content": "hi"}]},
    "messages missing": {"model": MODEL},
    "top_logprobs 21": {**MINIMAL, "logprobs": True, "top_logprobs": 21},
    "presence_penalty -3": {**MINIMAL, "presence_penalty": -3},
    "max_tokens 0": {**MINIMAL, "max_tokens": 0},
    "unknown message field": {**MINIMAL, "messages": [{"role": "user", "content": "hi", "mood": "happy"}]},
}


@pytest.mark.parametrize("path", CHAT_PATHS)
@pytest.mark.parametrize("case", list(INVALID))
def test_schema_invalid_bodies_are_refused(server, validator, path, case):
    body = INVALID[case]
    assert not validator.is_valid(body), f"{case}: the schema should refuse it"
    r = httpx.post(server.url + path, json=body, headers=HEADERS)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    if path.startswith("/api/ai"):
        assert r.json()["status"] == "error" and r.json()["status_message"] == "invalid_params"
        assert err["type"] == "invalid_params" and err["detail"]
    else:
        assert err["type"] == "invalid_request_error" and err["message"]


# The same contract for JSON types: the schema says integer / number / boolean, and a string or a
# boolean in their place makes a body invalid; the server must refuse it too, not convert it.
WRONG_TYPES = {
    "max_tokens as a string": {**MINIMAL, "max_tokens": "3"},
    "max_tokens true": {**MINIMAL, "max_tokens": True},
    "temperature as a string": {**MINIMAL, "temperature": "0.5", "max_tokens": 2},
    "stream as a string": {**MINIMAL, "stream": "false", "max_tokens": 2},
    "n true": {**MINIMAL, "n": True, "max_tokens": 2},
    "logprobs 1": {**MINIMAL, "logprobs": 1, "max_tokens": 2},
}


def test_schema_invalid_types_are_refused_not_coerced(server, validator):
    accepted = []
    for case, body in WRONG_TYPES.items():
        assert not validator.is_valid(body), f"{case}: the schema should refuse it"
        r = httpx.post(server.url + "/v1/chat/completions", json=body, headers=HEADERS)
        assert r.status_code < 500, r.text
        if r.status_code != 400:
            accepted.append(case)
    assert accepted == [], f"the server accepts (status 200) bodies its published schema refuses: {accepted}"
