"""Anthropic's Messages API (/v1/messages) through the official `anthropic` package, on the demo model.

The demo's weights are random, so its text means nothing; but greedy decoding is deterministic,
so the same conversation must give the same text here as on /v1/chat/completions (the dialect is
a translation over the same generation path), streamed or not. Forced tool calls parse because
the grammar makes them.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import jsonschema
import pytest
from openai import OpenAI

from support.openai_helpers import ascii_stop
from support.server_process import ServerProcess

MODEL = "open-mistral-7b"
KEY = "anthropic-secret"
GREEDY = {"temperature": 0}  # the SDK (2.x) has no temperature argument: sent in the body
ASK = [{"role": "user", "content": "Tell me a story about a cat."}]
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                            "unit": {"enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"]}
TOOLS = [{"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER},
         {"name": "add", "description": "Add two numbers", "input_schema": {
             "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
             "required": ["a", "b"]}}]
SCHEMAS = {t["name"]: t["input_schema"] for t in TOOLS}
WEATHER_ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# One call: random weights may write parallel calls past any budget; one call is closed in time.
ANY = {"type": "any", "disable_parallel_tool_use": True}


@pytest.fixture(scope="module")
def claude(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def openai_client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


def create(claude, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", ASK)
    kw.setdefault("max_tokens", 12)
    return claude.messages.create(**kw)


def text_of(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


# ---- messages.create ---------------------------------------------------------------------------

def test_create_answers_in_anthropic_shape(claude):
    m = create(claude, extra_body=GREEDY)
    assert m.type == "message" and m.role == "assistant" and m.model == MODEL
    assert m.id.startswith("msg_")
    assert [b.type for b in m.content] == ["text"] and m.content[0].text
    assert m.stop_reason == "max_tokens" and m.stop_sequence is None
    assert m.usage.output_tokens == 12 and m.usage.input_tokens > 0
    assert m.usage.cache_creation_input_tokens == 0
    assert m.usage.cache_read_input_tokens >= 0


def test_greedy_text_equals_the_chat_completions_text(claude, openai_client):
    system = "You are terse."
    m = create(claude, system=system, max_tokens=16, extra_body=GREEDY)
    r = openai_client.chat.completions.create(
        model=MODEL, max_tokens=16, temperature=0,
        messages=[{"role": "system", "content": system}] + ASK)
    assert text_of(m) == r.choices[0].message.content
    assert m.usage.input_tokens == r.usage.prompt_tokens
    assert m.usage.output_tokens == r.usage.completion_tokens
    # System as text blocks and the message as content blocks: the same prompt.
    blocks = create(claude, system=[{"type": "text", "text": system}], max_tokens=16, extra_body=GREEDY,
                    messages=[{"role": "user", "content": [{"type": "text", "text": ASK[0]["content"]}]}])
    assert text_of(blocks) == text_of(m)


def test_the_prefix_cache_shows_in_usage(claude):
    long = [{"role": "user", "content": "Tell me a long story about a cat and a dog. " * 20}]
    first = create(claude, messages=long, max_tokens=2, extra_body=GREEDY)
    again = create(claude, messages=long, max_tokens=2, extra_body=GREEDY)
    assert first.usage.input_tokens >= 100
    assert again.usage.cache_read_input_tokens >= 64  # the shared prompt, in whole blocks


def test_sampling_fields_are_applied(claude):
    greedy = text_of(create(claude, max_tokens=16, extra_body=GREEDY))
    assert text_of(create(claude, max_tokens=16, extra_body={"temperature": 0.0, "top_k": 1})) == greedy
    # top_k=1 is greedy whatever the temperature.
    assert text_of(create(claude, max_tokens=16, extra_body={"temperature": 1.0, "top_k": 1})) == greedy
    sampled = {text_of(create(claude, max_tokens=16, extra_body={"temperature": 1.0, "top_p": 1.0}))
               for _ in range(2)}
    assert sampled != {greedy}


def test_stop_sequences_end_the_text_and_are_reported(claude):
    full = text_of(create(claude, max_tokens=24, extra_body=GREEDY))
    stop = ascii_stop(full)
    m = create(claude, max_tokens=24, stop_sequences=[stop, "never-written-zz"], extra_body=GREEDY)
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == stop
    assert text_of(m) == full[:full.find(stop)]


def test_metadata_and_sdk_fields_are_accepted(claude):
    m = create(claude, max_tokens=2, metadata={"user_id": "user-1"}, service_tier="auto", extra_body=GREEDY)
    assert m.stop_reason == "max_tokens"


# ---- streaming ---------------------------------------------------------------------------------

def test_stream_text_equals_the_whole_answer(claude):
    whole = create(claude, max_tokens=16, extra_body=GREEDY)
    with claude.messages.stream(model=MODEL, messages=ASK, max_tokens=16, extra_body=GREEDY) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert final.content[0].text == text_of(whole)
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 16
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds


def test_stream_events_on_the_wire(server):
    body = {"model": MODEL, "messages": ASK, "max_tokens": 4, "stream": True, "temperature": 0}
    with httpx.stream("POST", server.url + "/v1/messages", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [chunk.split("\n") for chunk in raw.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    for lines in events:
        data = json.loads(lines[1].removeprefix("data: "))
        assert data["type"] == lines[0].removeprefix("event: ")
    assert names[:2] == ["message_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    delta = json.loads(events[-2][1].removeprefix("data: "))
    assert delta["delta"]["stop_reason"] == "max_tokens" and delta["usage"]["output_tokens"] == 4


# ---- tools -------------------------------------------------------------------------------------

def check_tool_uses(blocks, names=tuple(SCHEMAS)):
    uses = [b for b in blocks if b.type == "tool_use"]
    assert uses
    for b in uses:
        assert b.id.startswith("toolu_") and b.name in names
        jsonschema.validate(b.input, SCHEMAS[b.name])
    return uses


def test_tool_choice_any_forces_a_call(claude):
    m = create(claude, messages=WEATHER_ASK, tools=TOOLS, tool_choice=ANY, max_tokens=100)
    assert m.stop_reason == "tool_use"
    check_tool_uses(m.content)


def test_tool_choice_tool_names_the_call(claude):
    m = create(claude, messages=WEATHER_ASK, tools=TOOLS, max_tokens=100,
               tool_choice={"type": "tool", "name": "add", "disable_parallel_tool_use": True})
    uses = check_tool_uses(m.content, names=("add",))
    assert len(uses) == 1


def test_tool_choice_none_never_calls(claude):
    m = create(claude, messages=WEATHER_ASK, tools=TOOLS, tool_choice={"type": "none"}, max_tokens=8)
    assert m.stop_reason != "tool_use" and all(b.type == "text" for b in m.content)


def test_a_tool_round_trip(claude):
    m = create(claude, messages=WEATHER_ASK, tools=TOOLS, tool_choice=ANY, max_tokens=100)
    uses = check_tool_uses(m.content)
    history = WEATHER_ASK + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": b.id, "content": "18 degrees, sunny"}
                                     for b in uses]}]
    again = create(claude, messages=history, tools=TOOLS, max_tokens=8)
    assert again.stop_reason in ("end_turn", "max_tokens", "tool_use")
    # The result as text blocks, with a question after it, is a valid conversation too.
    history[-1]["content"] = [{"type": "tool_result", "tool_use_id": b.id, "is_error": True,
                               "content": [{"type": "text", "text": "no such city"}]} for b in uses]
    assert create(claude, messages=history, tools=TOOLS, max_tokens=4).stop_reason


def test_streamed_tool_use(claude):
    with claude.messages.stream(model=MODEL, messages=WEATHER_ASK, tools=TOOLS, tool_choice=ANY,
                                max_tokens=100) as stream:
        deltas = [e.delta.partial_json for e in stream
                  if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = stream.get_final_message()
    assert deltas, "no input_json_delta was streamed"
    assert final.stop_reason == "tool_use", final
    uses = check_tool_uses(final.content)
    assert len(uses) == 1 and json.loads("".join(deltas)) == uses[0].input


# ---- count_tokens ------------------------------------------------------------------------------

def test_count_tokens_matches_the_prompt(claude):
    counted = claude.messages.count_tokens(model=MODEL, messages=ASK, system="You are terse.")
    m = create(claude, system="You are terse.", max_tokens=1, extra_body=GREEDY)
    assert counted.input_tokens == m.usage.input_tokens > 0
    with_tools = claude.messages.count_tokens(model=MODEL, messages=WEATHER_ASK, tools=TOOLS)
    assert with_tools.input_tokens > claude.messages.count_tokens(model=MODEL, messages=WEATHER_ASK).input_tokens


# ---- errors ------------------------------------------------------------------------------------

def test_missing_max_tokens_is_an_invalid_request(server):
    r = httpx.post(server.url + "/v1/messages", json={"model": MODEL, "messages": ASK}, timeout=30)
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


def test_invalid_input_is_refused_with_the_sdk_exception(claude):
    with pytest.raises(anthropic.BadRequestError) as err:
        create(claude, extra_body={"temperature": 1.5})
    assert err.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError) as err:
        create(claude, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}])
    assert "text only" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        create(claude, messages=[{"role": "robot", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError):
        create(claude, tool_choice=ANY)  # no tools
    with pytest.raises(anthropic.BadRequestError):
        create(claude, stop_sequences=[f"s{i}" for i in range(17)])
    with pytest.raises(anthropic.BadRequestError) as err:
        create(claude, extra_body={"no_such_field": 1})
    assert "no_such_field" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as err:  # a prefill needs text (test_conversation_shapes.py)
        create(claude, messages=ASK + [{"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1, "b": 2}}]}], tools=TOOLS)
    assert "cannot be continued" in err.value.body["error"]["message"]


def test_unknown_model_is_not_found(claude):
    with pytest.raises(anthropic.NotFoundError) as err:
        create(claude, model="claude-nonexistent")
    assert err.value.status_code == 404 and err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="claude-nonexistent", messages=ASK)


@pytest.fixture(scope="module")
def keyed(demo_data_dir):
    proc = ServerProcess(demo_data_dir, "--api-key", KEY).wait_ready()
    yield proc
    proc.stop()


def test_a_keyed_server_takes_x_api_key(keyed):
    good = anthropic.Anthropic(base_url=keyed.url, api_key=KEY, max_retries=0, timeout=120)
    assert create(good, max_tokens=2, extra_body=GREEDY).stop_reason == "max_tokens"
    bad = anthropic.Anthropic(base_url=keyed.url, api_key="wrong", max_retries=0, timeout=120)
    with pytest.raises(anthropic.AuthenticationError) as err:
        create(bad, max_tokens=2)
    assert err.value.status_code == 401 and err.value.body["error"]["type"] == "authentication_error"
    r = httpx.post(keyed.url + "/v1/messages/count_tokens", json={"model": MODEL, "messages": ASK}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_usage_is_logged_with_the_endpoint(server, claude):
    m = create(claude, max_tokens=3, extra_body=GREEDY)
    rows = httpx.get(server.url + "/api/ai/generations", params={"limit": 5}, timeout=30).json()["data"]
    row = next(r for r in rows if r["id"] == m.id.removeprefix("msg_"))
    assert row["endpoint"] == "/v1/messages"
    assert row["completion_tokens"] == 3 and row["prompt_tokens"] == m.usage.input_tokens
