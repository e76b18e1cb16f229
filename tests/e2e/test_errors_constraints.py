"""Structured outputs and tools that cannot be honoured: the error names the part of the schema,
grammar or tool that is wrong, in both error shapes (support/error_shapes.py); the OpenAI
defaults that ask for nothing are accepted.

Every bad request must be the client's error: the `http` fixture fails a test that got a 5xx.
"""

from __future__ import annotations

import pytest

from support.error_shapes import BODY, CHAT_PATHS, both, post_json


@pytest.fixture(scope="module")
def server(errors_server):
    """The error tests' open server (tests/e2e/conftest.py), shared by the test_errors_*.py files."""
    return errors_server


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
