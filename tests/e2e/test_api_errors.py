"""Every way a request can be wrong, and the error body it gets, on both path families.

/v1/* answers in the OpenAI shape:   {"error": {"message", "type", "param", "code"}}
/api/ai/* answers in the hub's:      {"error": {"type", "title", "detail"}, "status": "error",
                                      "status_message": TYPE}
with TYPE one of unauthenticated, invalid_params, resource_not_found, unknown_error.

No request here may get a 5xx: every response is recorded, and the last test checks that none
did and that the servers still answer a normal request.
"""

from __future__ import annotations

import json

import httpx
import pytest

from server_process import ServerProcess

MODEL = "open-mistral-7b"
HUB_TYPES = {"unauthenticated", "invalid_params", "resource_not_found", "unknown_error"}
CHAT_PATHS = ["/v1/chat/completions", "/api/ai/chat/completions"]
USER = [{"role": "user", "content": "Hello"}]
BODY = {"model": MODEL, "messages": USER, "max_tokens": 2}
KEY = "secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_BODY = 2000
MAX_LEN = 64

@pytest.fixture
def http() -> httpx.Client:
    """A client for one test that fails the test if any response it got was a 5xx: every bad
    input in this module must be the client's error, never the server's."""
    statuses: list[tuple[str, str, int]] = []  # (method, url, status) of this test's responses

    def record(response: httpx.Response) -> None:
        statuses.append((response.request.method, str(response.request.url), response.status_code))

    with httpx.Client(timeout=120, event_hooks={"response": [record]}) as client:
        yield client
    assert [s for s in statuses if s[2] >= 500] == []


@pytest.fixture(scope="module")
def locked(demo_data_dir):
    """A server with an API key, a small body limit and a short context."""
    proc = ServerProcess(demo_data_dir, "--api-key", KEY, "--max-body-bytes", str(MAX_BODY),
                         "--max-model-len", str(MAX_LEN)).wait_ready()
    yield proc
    proc.stop()


# ---- the two shapes ------------------------------------------------------------------------------

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


# ---- the body is not a chat request at all --------------------------------------------------------

@pytest.mark.parametrize("content", ["{bad json", '{"model": "open-mistral-7b",', "\x00\x01"])
def test_invalid_json(http, server, content):
    both(post_raw(http, server, content), 400, "invalid_params", code="invalid_json", param=None,
         contains=("JSON",))


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "5", "null"])
def test_body_not_an_object(http, server, content):
    both(post_raw(http, server, content), 400, "invalid_params", code="invalid_json", contains=("object",))


def test_form_body_is_refused(http, server):
    both(post_raw(http, server, "model=open-mistral-7b", "application/x-www-form-urlencoded"), 400,
         "invalid_params")


def test_empty_body(http, server):
    both(post_raw(http, server, b""), 400, "invalid_params")


# ---- fields ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("messages", "hi"),
    ("messages", {"role": "user"}),
    ("temperature", "hot"),
    ("max_tokens", 3.5),
    ("max_tokens", "ten"),
    ("n", [1]),
    ("stop", 5),
    ("logit_bias", [1, 2]),
    ("stream", {"yes": True}),
    ("model", 5),
])
def test_wrong_types(http, server, field, value):
    err = openai_error(http.post(server.url + CHAT_PATHS[0], json={**BODY, field: value}), 400, contains=(field,))
    assert err["param"] == field or err["param"].startswith(field + "."), err
    hub_error(http.post(server.url + CHAT_PATHS[1], json={**BODY, field: value}), 400, "invalid_params",
              contains=(field,))


def test_wrong_type_inside_a_message(http, server):
    body = {**BODY, "messages": [{"role": "user", "content": 5}]}
    err = openai_error(http.post(server.url + CHAT_PATHS[0], json=body), 400)
    assert err["param"].startswith("messages")
    hub_error(http.post(server.url + CHAT_PATHS[1], json=body), 400, "invalid_params", contains=("messages",))


@pytest.mark.parametrize("field", ["foo", "functions", "max_new_tokens"])
def test_unknown_parameter_is_named(http, server, field):
    both(post_json(http, server, {**BODY, field: 1}), 400, "invalid_params", param=field,
         contains=(field, "Unrecognized"))


def test_unknown_field_in_a_message_is_named(http, server):
    body = {**BODY, "messages": [{"role": "user", "content": "hi", "mood": "happy"}]}
    err = openai_error(http.post(server.url + CHAT_PATHS[0], json=body), 400, contains=("mood",))
    assert err["param"].startswith("messages") and err["param"].endswith("mood")


@pytest.mark.parametrize("field", ["model", "messages"])
def test_missing_required_field(http, server, field):
    body = {k: v for k, v in BODY.items() if k != field}
    both(post_json(http, server, body), 400, "invalid_params", param=field, contains=("Missing", field))


@pytest.mark.parametrize("field,value", [
    ("temperature", 3),
    ("temperature", -0.5),
    ("top_p", 0),
    ("top_p", 1.5),
    ("n", 0),
    ("n", 129),
    ("max_tokens", 0),
    ("max_completion_tokens", -1),
    ("presence_penalty", 2.5),
    ("frequency_penalty", -3),
    ("top_logprobs", 21),
    ("seed", 2**70),
    ("user", "u" * 300),
    ("top_k", -2),
    ("min_p", 1.5),
    ("repetition_penalty", 0),
    ("repetition_penalty", 11),
    ("min_tokens", -1),
])
def test_out_of_range_value_names_the_param(http, server, field, value):
    body = {**BODY, field: value}
    if field == "top_logprobs":
        body["logprobs"] = True
    both(post_json(http, server, body), 400, "invalid_params", param=field, contains=(field,))


@pytest.mark.parametrize("bias,why", [({"6023": 101}, "value"), ({"40000": 1}, "vocabulary"),
                                      ({"-1": 1}, "key"), ({"abc": 1}, "key")])
def test_bad_logit_bias(http, server, bias, why):
    err = openai_error(http.post(server.url + CHAT_PATHS[0], json={**BODY, "logit_bias": bias}), 400)
    assert err["param"].startswith("logit_bias")
    hub_error(http.post(server.url + CHAT_PATHS[1], json={**BODY, "logit_bias": bias}), 400, "invalid_params",
              contains=("logit_bias",))


def test_stop_token_ids_outside_the_vocabulary(http, server):
    both(post_json(http, server, {**BODY, "stop_token_ids": [40000]}), 400, "invalid_params",
         param="stop_token_ids", contains=("40000", "32768"))


def test_min_tokens_over_max_tokens(http, server):
    both(post_json(http, server, {**BODY, "min_tokens": 5, "max_tokens": 3}), 400, "invalid_params",
         param="min_tokens", contains=("5", "3"))


@pytest.mark.parametrize("stop", ["", [""]])
def test_empty_stop_string(http, server, stop):
    both(post_json(http, server, {**BODY, "stop": stop}), 400, "invalid_params", param="stop")


def test_too_many_stop_strings_names_stop(http, server):
    """Five stop strings (at most 4): the error must name `stop` and say what is wrong, not
    pydantic's union branch (`stop.str`, "Input should be a valid string")."""
    both(post_json(http, server, {**BODY, "stop": ["a", "b", "c", "d", "e"]}), 400, "invalid_params",
         param="stop", contains=("4",))


def test_top_logprobs_needs_logprobs(http, server):
    both(post_json(http, server, {**BODY, "top_logprobs": 3}), 400, "invalid_params", param="top_logprobs",
         contains=("logprobs",))


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


# ---- structured outputs and tools that cannot be honoured --------------------------------------------

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def schema_format(schema) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


@pytest.mark.parametrize("extra,param,code,contains", [
    # Not JSON Schema at all: the meta-schema check names the bad part.
    ({"response_format": schema_format({"type": "object", "properties": {"age": {"type": "int"}}})},
     "response_format.json_schema.schema", "invalid_schema",
     ("response_format.json_schema.schema.properties.age.type",)),
    # Valid JSON Schema the grammar engine cannot compile: the smallest failing part is named.
    ({"response_format": schema_format({"type": "object", "properties": {
        "code": {"type": "string", "pattern": "(?<=a)b"}}})},
     "response_format.json_schema.schema", "unsupported_schema", ("properties.code", "Lookbehind")),
    ({"guided_regex": "(?<=a)b"}, "guided_regex", "unsupported_schema", ("guided_regex", "Lookbehind")),
    ({"guided_grammar": "root ::= undefined_rule"}, "guided_grammar", "unsupported_schema", ("guided_grammar",)),
    ({"guided_json": {"type": "object", "minProperties": "two"}}, "guided_json", "invalid_schema", ("minProperties",)),
    ({"guided_choice": ["yes", ""]}, "guided_choice", ..., ("non-empty",)),
    ({"guided_choice": ["a"], "guided_regex": "a"}, "guided_choice", ..., ("only one",)),
    ({"response_format": {"type": "json_object"}, "guided_regex": "a"}, "guided_regex", ..., ("only one",)),
    ({"tool_choice": "required"}, "tool_choice", ..., ("needs tools",)),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice", ...,
     ("'f'",)),
    ({"tools": [WEATHER, WEATHER]}, "tools", ..., ("more than once",)),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]},
     "tools.0.function.parameters", "invalid_schema", ("tools.0.function.parameters.type",)),
    ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}},
     "response_format", "unsupported_parameter", ("tool calls",)),
])
def test_constraint_errors_name_the_part(http, server, extra, param, code, contains):
    both(post_json(http, server, {**BODY, **extra}), 400, "invalid_params", param=param, code=code,
         contains=contains)


@pytest.mark.parametrize("field,value", [
    ("response_format", {"type": "xml"}),
    ("response_format", {"type": "json_schema"}),
    ("tools", [{"type": "function", "function": {"name": "has space"}}]),
    ("tool_choice", "sometimes"),
    ("guided_choice", []),
])
def test_malformed_constraint_fields_are_named(http, server, field, value):
    both(post_json(http, server, {**BODY, field: value}), 400, "invalid_params", contains=(field,))


@pytest.mark.parametrize("field,value", [("tools", []), ("tool_choice", "none"), ("response_format", {"type": "text"}),
                                         ("parallel_tool_calls", True)])
def test_harmless_openai_defaults_are_accepted(http, server, field, value):
    for path in CHAT_PATHS:
        r = http.post(server.url + path, json={**BODY, field: value})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 2


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
    hub_error(http.post(server.url + CHAT_PATHS[1], json={**BODY, "messages": messages}), 400, "invalid_params",
              contains=("messages",))


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
