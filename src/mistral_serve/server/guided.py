"""A request's output constraint (response_format or a guided_* field) as an engine GuidedDecoding.

Schemas are checked here against their JSON Schema meta-schema, so a malformed one is refused
with the path of the bad part; what is valid JSON Schema but beyond the grammar engine is refused
when it compiles (engine/grammar.py), again naming the part.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from jsonschema import SchemaError
from jsonschema.validators import validator_for

from ..engine.async_engine import GrammarError
from ..engine.params import GuidedDecoding
from .errors import bad_request

# Keywords whose values are sub-schemas (or maps/lists of them): where a failing part is searched.
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def schema_json(schema: Any, param: str) -> str:
    """A JSON Schema checked against its meta-schema, as the compact JSON the grammar is compiled
    (and cached) from. Property order is kept: it is the order the model writes them in."""
    if not isinstance(schema, dict):
        raise bad_request(f"{param} must be a JSON Schema object", param=param, code="invalid_schema")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as err:
        where = ".".join([param, *(str(p) for p in err.path)])
        raise bad_request(f"{where}: invalid JSON Schema: {err.message}", param=param,
                          code="invalid_schema") from None
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


def request_constraint(body) -> GuidedDecoding | None:
    """The one output constraint a chat or completions request asks for, if any."""
    found: list[GuidedDecoding] = []
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_object":
        found.append(GuidedDecoding("json_object", param="response_format"))
    elif fmt is not None and fmt.type == "json_schema":
        param = "response_format.json_schema.schema"
        found.append(GuidedDecoding("json_schema", schema_json(fmt.json_schema.schema_, param), param))
    if body.guided_json is not None:
        found.append(GuidedDecoding("json_schema", schema_json(body.guided_json, "guided_json"), "guided_json"))
    if body.guided_regex is not None:
        found.append(GuidedDecoding("regex", body.guided_regex, "guided_regex"))
    if body.guided_choice is not None:
        if any(not c for c in body.guided_choice):
            raise bad_request("guided_choice entries must be non-empty strings", param="guided_choice")
        found.append(GuidedDecoding("choice", json.dumps(body.guided_choice, ensure_ascii=False), "guided_choice"))
    if body.guided_grammar is not None:
        found.append(GuidedDecoding("grammar", body.guided_grammar, "guided_grammar"))
    if len(found) > 1:
        names = ", ".join(g.field for g in found)
        raise bad_request(f"only one output constraint per request, got {names}", param=found[1].field)
    return found[0] if found else None


Compile = Callable[[GuidedDecoding], Any]  # raises GrammarError; the engine client's compile_grammar


def compile_checked(compile: Compile, spec: GuidedDecoding) -> None:
    """Compile (and so cache) the grammar; on failure, a 400 naming the smallest sub-schema that
    fails on its own with the same message."""
    try:
        compile(spec)
    except GrammarError as err:
        message = str(err)
        if spec.kind == "json_schema":
            where = _failing_part(compile, json.loads(spec.value), spec, _reason(message))
            if where:
                message = message.replace(f"{spec.param}:", f"{spec.param}.{where}:", 1)
        raise bad_request(message, param=spec.param, code="unsupported_schema") from None


def _reason(message: str) -> str:
    return message.rsplit(": ", 1)[-1]


def _failing_part(compile: Compile, schema: Any, spec: GuidedDecoding, reason: str) -> str:
    """The path (a.b.0.c) of the deepest sub-schema that fails alone for the same reason."""
    for path, child in _children(schema):
        if not isinstance(child, dict):
            continue
        try:
            compile(GuidedDecoding("json_schema", json.dumps(child), spec.param))
        except GrammarError as err:
            if _reason(str(err)) == reason:
                deeper = _failing_part(compile, child, spec, reason)
                return f"{path}.{deeper}" if deeper else path
    return ""


def _children(schema: dict):
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            for name, child in schema[key].items():
                yield f"{key}.{name}", child
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            for i, child in enumerate(schema[key]):
                yield f"{key}.{i}", child
    for key in _SUBSCHEMA_ONE:
        if key in schema:
            yield key, schema[key]
