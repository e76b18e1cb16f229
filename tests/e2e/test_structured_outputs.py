"""Structured outputs and tool calling through the official `openai` client, on the demo model.

The demo's weights are random, so whatever it writes is noise: an answer that parses and matches
its schema here does so because the grammar forced it to, token by token. These tests would fail
if the server ignored the constraint (random text is never JSON) or cut it at max_tokens (the
ending planner closes strings and brackets before the budget runs out).
"""

from __future__ import annotations

import asyncio
import json
import random
import re

import httpx
import jsonschema
import pytest
from openai import AsyncOpenAI, OpenAI

MODEL = "open-mistral-7b"
MESSAGES = [{"role": "user", "content": "Describe a person as JSON."}]
TOOL_CALLS_ID = 5  # `[TOOL_CALLS]` in the v3 vocabulary


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300)


# ---- 50 varied schemas ----------------------------------------------------------------------------

def leaf(rng: random.Random) -> dict:
    kind = rng.choice(["string", "bounded_string", "pattern", "integer", "number", "boolean", "enum",
                       "nullable", "const"])
    if kind == "string":
        return {"type": "string"}
    if kind == "bounded_string":
        return {"type": "string", "minLength": rng.randint(1, 3), "maxLength": rng.randint(4, 12)}
    if kind == "pattern":
        return {"type": "string", "pattern": rng.choice(["^[A-Z]{2}-[0-9]{3}$", "^[a-z]+@[a-z]+\\.com$",
                                                         "^(red|green|blue)$"])}
    if kind == "integer":
        low = rng.randint(-50, 50)
        return {"type": "integer", "minimum": low, "maximum": low + rng.randint(0, 100)}
    if kind == "number":
        return {"type": "number", "minimum": -1.5, "maximum": rng.choice([0.5, 2.25, 100.0])}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "enum":
        return {"enum": rng.sample(["cat", "dog", "owl", 3, None, True], rng.randint(2, 4))}
    if kind == "nullable":
        return {"type": ["string", "null"], "maxLength": 8}
    return {"const": rng.choice(["v1", 42])}


def node(rng: random.Random, depth: int) -> dict:
    roll = rng.random()
    if depth > 0 and roll < 0.3:
        return obj(rng, depth - 1)
    if depth > 0 and roll < 0.5:
        return {"type": "array", "items": node(rng, depth - 1), "minItems": rng.randint(0, 2),
                "maxItems": rng.randint(2, 3)}
    return leaf(rng)


def obj(rng: random.Random, depth: int) -> dict:
    names = rng.sample(["name", "age", "city", "tags", "score", "active", "kind", "meta", "items", "id"],
                       rng.randint(1, 4))
    properties = {name: node(rng, depth) for name in names}
    required = [n for n in names if rng.random() < 0.7]
    schema = {"type": "object", "properties": properties, "required": required}
    if rng.random() < 0.5:
        schema["additionalProperties"] = False
    return schema


HAND_WRITTEN = [
    # references into $defs
    {"$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                         "required": ["x", "y"]}},
     "type": "object", "properties": {"a": {"$ref": "#/$defs/point"}, "b": {"$ref": "#/$defs/point"}},
     "required": ["a", "b"]},
    # a choice of shapes
    {"anyOf": [{"type": "object", "properties": {"cat": {"type": "string", "maxLength": 5}}, "required": ["cat"]},
               {"type": "object", "properties": {"dog": {"type": "integer"}}, "required": ["dog"]}]},
    # an array at the root
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 2, "maxItems": 4},
    # exclusive bounds
    {"type": "object", "properties": {"p": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}},
     "required": ["p"]},
]


def schemas() -> list[dict]:
    rng = random.Random(7)
    generated = [obj(rng, depth=rng.randint(0, 2)) for _ in range(50 - len(HAND_WRITTEN))]
    return HAND_WRITTEN + generated


def test_50_json_schema_requests_all_validate(server):
    async def one(client: AsyncOpenAI, i: int, schema: dict):
        r = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=120, temperature=1.0, seed=i,
            response_format={"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": schema,
                                                                    "strict": True}})
        return r.choices[0]

    async def run_all():
        async with AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300) as c:
            return await asyncio.gather(*(one(c, i, s) for i, s in enumerate(schemas())))

    choices = asyncio.run(run_all())
    failures = []
    for i, (schema, choice) in enumerate(zip(schemas(), choices)):
        try:
            jsonschema.validate(json.loads(choice.message.content), schema)
        except (ValueError, jsonschema.ValidationError) as err:
            failures.append((i, choice.finish_reason, choice.message.content, str(err)[:200]))
    assert not failures, failures
    assert all(c.finish_reason == "stop" for c in choices)


def test_json_object_parses(client):
    for seed in range(5):
        r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=60, seed=seed,
                                           response_format={"type": "json_object"})
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_json_object_streamed_parses(client):
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=60, seed=3, stream=True,
                                            response_format={"type": "json_object"})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert isinstance(json.loads(text), dict)


def test_schema_on_the_hub_path(server):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    r = httpx.post(server.url + "/api/ai/chat/completions", timeout=120, json={
        "model": MODEL, "messages": MESSAGES, "max_tokens": 30,
        "response_format": {"type": "json_schema", "json_schema": {"name": "ok", "schema": schema}}})
    assert r.status_code == 200, r.text
    jsonschema.validate(json.loads(r.json()["choices"][0]["message"]["content"]), schema)


def test_guided_choice_and_regex(client):
    for seed in range(4):
        r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=10, seed=seed,
                                           extra_body={"guided_choice": ["yes", "no", "maybe so"]})
        assert r.choices[0].message.content in ("yes", "no", "maybe so")
        r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20, seed=seed,
                                           extra_body={"guided_regex": "[A-Z]{2}-[0-9]{3}"})
        assert re.fullmatch("[A-Z]{2}-[0-9]{3}", r.choices[0].message.content)


def test_guided_grammar_and_json_on_completions(client):
    r = client.completions.create(model=MODEL, prompt="Numbers:", max_tokens=20, seed=1,
                                  extra_body={"guided_grammar": 'root ::= "[" [0-9] ("," [0-9])* "]"'})
    assert re.fullmatch(r"\[[0-9](,[0-9])*\]", r.choices[0].text)
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 3}},
              "required": ["n"]}
    r = client.completions.create(model=MODEL, prompt="JSON:", max_tokens=30, seed=1, n=2,
                                  extra_body={"guided_json": schema})
    for choice in r.choices:
        jsonschema.validate(json.loads(choice.text), schema)


# ---- tool calling -------------------------------------------------------------------------------------

WEATHER_PARAMS = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "unit"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                      "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "add", "description": "Add two numbers", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"]}}},
]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def check_calls(calls, names=tuple(PARAMS)) -> None:
    assert calls
    for call in calls:
        assert re.fullmatch("[a-zA-Z0-9]{9}", call.id) and call.type == "function"
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), PARAMS[call.function.name])


@pytest.mark.parametrize("seed", range(4))
def test_required_tool_calls_parse_and_match_the_schema(client, seed):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                       max_tokens=100, seed=seed)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    check_calls(choice.message.tool_calls)


@pytest.mark.parametrize("seed", range(4))
def test_required_tool_calls_streamed(client, seed):
    with client.chat.completions.stream(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                        max_tokens=100, seed=seed) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    deltas = [e.chunk.choices[0].delta.tool_calls[0] for e in events
              if e.type == "chunk" and e.chunk.choices and e.chunk.choices[0].delta.tool_calls]
    assert deltas, "no tool-call deltas were streamed"
    first = deltas[0]
    assert first.id and first.function.name and first.function.arguments == ""  # as OpenAI starts a call
    # The arguments arrive in pieces as the model writes them, and the pieces add up to the call.
    pieces = [d.function.arguments for d in deltas if d.index == 0 and d.function.arguments]
    assert len(pieces) > 1
    calls = final.choices[0].message.tool_calls
    assert json.loads("".join(pieces)) == json.loads(calls[0].function.arguments)
    assert [d.id for d in deltas if d.id] == [c.id for c in calls]
    assert final.choices[0].finish_reason == "tool_calls"
    check_calls(final.choices[0].message.tool_calls)


def test_named_function_single_call(client):
    for seed in range(3):
        r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, max_tokens=80, seed=seed,
                                           tool_choice={"type": "function", "function": {"name": "add"}},
                                           parallel_tool_calls=False)
        calls = r.choices[0].message.tool_calls
        assert len(calls) == 1
        check_calls(calls, names=("add",))


def test_tool_choice_none_never_calls(client):
    # A +100 bias makes `[TOOL_CALLS]` the demo's certain first token, unless the server bans it.
    bias = {str(TOOL_CALLS_ID): 100}
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none",
                                       max_tokens=8, logit_bias=bias)
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason != "tool_calls"
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, logit_bias=bias)  # no tools
    assert r.choices[0].message.tool_calls is None


def test_auto_calls_when_the_model_writes_the_trigger(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, max_tokens=100, seed=1,
                                       logit_bias={str(TOOL_CALLS_ID): 100})
    assert r.choices[0].finish_reason == "tool_calls"
    check_calls(r.choices[0].message.tool_calls)


def test_auto_without_a_trigger_is_plain_content(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, max_tokens=8, temperature=0,
                                       logit_bias={str(TOOL_CALLS_ID): -100})
    assert r.choices[0].message.tool_calls is None and isinstance(r.choices[0].message.content, str)


def test_a_tool_round_trip(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                       max_tokens=100, seed=5)
    calls = r.choices[0].message.tool_calls
    history = ASK + [r.choices[0].message.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees, sunny"} for call in calls]
    r = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS, max_tokens=8)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_foreign_tool_call_ids_are_accepted(client):
    # Ids from other providers ("call_...") are not Mistral's 9 characters; the server maps them.
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_Xyz_0123456789", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "call_Xyz_0123456789", "content": "18"}]
    r = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS, max_tokens=4)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
