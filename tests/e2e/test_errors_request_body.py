"""Chat requests that are not requests at all (bad JSON, not an object, a form, no body) or whose
fields are wrong (types, unknown or missing names, values out of range, limits that contradict
each other): refused with a 400 that names the field, in both error shapes (support/error_shapes.py).

Every bad request must be the client's error: the `http` fixture fails a test that got a 5xx.
"""

from __future__ import annotations

import pytest

from support.error_shapes import BODY, CHAT_PATHS, both, hub_error, openai_error, post_json, post_raw


@pytest.fixture(scope="module")
def server(errors_server):
    """The error tests' open server (tests/e2e/conftest.py), shared by the test_errors_*.py files."""
    return errors_server


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


@pytest.mark.parametrize("field", ["foo", "top_n_tokens", "max_new_tokens"])
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
    if field == "messages":
        both(post_json(http, server, body), 400, "invalid_params", param=field, contains=("Missing", field))
        return
    # No model: the hub answers in its own words (test_hub_api.py), OpenAI's path in OpenAI's.
    openai_error(http.post(server.url + CHAT_PATHS[0], json=body), 400, param=field, contains=("Missing", field))
    detail = hub_error(http.post(server.url + CHAT_PATHS[1], json=body), 400, "invalid_params")["detail"]
    assert detail == "You must specify a model to call"


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
