"""OpenAI's Responses API (/v1/responses) through the official `openai` package and the OpenAI Agents
SDK, on the demo model.

The demo's weights are random, so its text means nothing; but greedy decoding is deterministic, so
the same conversation must give the same text here as on /v1/chat/completions (the dialect is a
translation over the same generation path), streamed or not, and a stored conversation continued
with previous_response_id must be the very prompt the whole conversation makes. Random weights
rarely end an answer by themselves, so answers that must end `completed` stop at a stop string
taken from the greedy text (an extension, sent in extra_body).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import jsonschema
import pytest
from openai import AsyncOpenAI, BadRequestError, NotFoundError, OpenAI

from support.openai_helpers import ascii_stop, prompt_ids
from support.server_process import ServerProcess, fresh_data_dir

MODEL = "open-mistral-7b"
ASK = "Tell me a story about a cat."
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                            "unit": {"enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"], "additionalProperties": False}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city", "parameters": WEATHER}]
# One forced call: random weights may write parallel calls past any budget; one call is closed in time.
FORCED = {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False, "max_output_tokens": 60}


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


def create(client, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("input", ASK)
    kw.setdefault("max_output_tokens", 10)
    kw.setdefault("temperature", 0)
    return client.responses.create(**kw)


def chat_text(client, messages, **kw) -> str:
    kw.setdefault("max_tokens", 10)
    return client.chat.completions.create(model=MODEL, messages=messages, temperature=0,
                                          **kw).choices[0].message.content


@pytest.fixture(scope="module")
def stop(client) -> str:
    """A stop string from the greedy answer to ASK, so that an answer ends `completed`."""
    return ascii_stop(create(client).output_text)


# ---- responses.create ----------------------------------------------------------------------------


def test_an_explicit_null_is_the_default_as_on_the_chat_path(server):
    """OpenAI reads "top_p": null as its default; so does the chat path here (protocol_common)."""
    plain = {"model": MODEL, "input": ASK, "max_output_tokens": 5, "temperature": 0}
    nulls = {**plain, "top_p": None, "store": None, "parallel_tool_calls": None, "truncation": None,
             "instructions": None, "metadata": None}
    with httpx.Client(timeout=120) as http:
        a, b = (http.post(server.url + "/v1/responses", json=body) for body in (plain, nulls))
    assert a.status_code == b.status_code == 200, b.text
    assert b.json()["output"][0]["content"][0]["text"] == a.json()["output"][0]["content"][0]["text"]

def test_a_response_is_openais_object_and_its_text_is_the_chat_paths(client):
    r = create(client, instructions="Answer briefly.")
    assert r.object == "response" and r.id.startswith("resp_") and r.model == MODEL
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    [message] = r.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert [p.type for p in message.content] == ["output_text"]
    assert r.output_text == message.content[0].text == chat_text(
        client, [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": ASK}])
    assert r.usage.output_tokens == 10
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.instructions == "Answer briefly." and r.temperature == 0 and r.store is True


def test_input_items_with_parts_are_the_conversation(client, server):
    items = [{"role": "developer", "content": [{"type": "input_text", "text": "Be kind."}]},
             {"role": "user", "content": [{"type": "input_text", "text": "Hi"}, {"type": "input_text", "text": "!"}]},
             {"type": "message", "role": "assistant", "status": "completed", "id": "msg_1",
              "content": [{"type": "output_text", "text": "Hello.", "annotations": [], "logprobs": []}]},
             {"role": "user", "content": ASK}]
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": ASK}]
    r = create(client, input=items)
    assert r.output_text == chat_text(client, messages)
    assert r.usage.input_tokens == len(prompt_ids(server, messages))


def test_an_answer_that_ends_is_completed(client, stop):
    r = create(client, extra_body={"stop": [stop]})
    assert r.status == "completed" and r.incomplete_details is None and r.completed_at
    assert stop not in r.output_text


def test_a_seed_repeats_a_sample(client):
    seeded = [create(client, temperature=1.0, extra_body={"seed": 7}).output_text for _ in range(2)]
    assert seeded[0] == seeded[1] != create(client, temperature=1.0, extra_body={"seed": 8}).output_text


def test_top_logprobs_come_with_each_output_token(client):
    r = create(client, top_logprobs=2, max_output_tokens=5)
    logprobs = r.output[0].content[0].logprobs
    assert len(logprobs) == 5 and all(len(lp.top_logprobs) == 2 for lp in logprobs)
    assert all(lp.logprob == pytest.approx(lp.top_logprobs[0].logprob) for lp in logprobs)  # greedy


# ---- text.format ---------------------------------------------------------------------------------

def test_json_schema_format_is_followed(client):
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
              "additionalProperties": False}
    r = create(client, max_output_tokens=40, text={"format": {"type": "json_schema", "name": "verdict",
                                                              "schema": schema, "strict": True}})
    assert r.status == "completed"
    jsonschema.validate(json.loads(r.output_text), schema)
    assert r.text.format.type == "json_schema"


def test_json_object_format_parses(client):
    r = create(client, max_output_tokens=60, text={"format": {"type": "json_object"}})
    if r.status == "completed":
        assert isinstance(json.loads(r.output_text), dict)
    else:  # cut by the limit: still a JSON object's beginning
        assert r.output_text.lstrip().startswith("{")


# ---- streaming ------------------------------------------------------------------------------------

def test_the_stream_is_the_official_event_sequence(client, stop):
    whole = create(client, extra_body={"stop": [stop]})
    events = list(create(client, stream=True, extra_body={"stop": [stop]}))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text == events[-4].text
    final = events[-1].response
    assert final.status == "completed" and final.output_text == text and final.usage.output_tokens > 0
    assert events[0].response.status == "in_progress" and events[0].response.output == []


def test_the_sdks_stream_helper_gives_the_final_response(client, stop):
    with client.responses.stream(model=MODEL, input=ASK, temperature=0, max_output_tokens=10,
                                 extra_body={"stop": [stop]}) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == create(client, extra_body={"stop": [stop]}).output_text


def test_a_cut_stream_ends_incomplete(client):
    events = list(create(client, stream=True, max_output_tokens=4))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert events[-2].item.status == "incomplete"


def test_function_call_arguments_stream(client):
    events = list(create(client, stream=True, **FORCED))
    kinds = [e.type for e in events]
    assert kinds[2] == "response.output_item.added" and events[2].item.type == "function_call"
    assert "response.function_call_arguments.delta" in kinds
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == arguments and done.item_id == events[2].item.id
    jsonschema.validate(json.loads(arguments), WEATHER)
    [call] = events[-1].response.output
    assert call.type == "function_call" and call.arguments == arguments and call.call_id.startswith("call_")


# ---- tools ----------------------------------------------------------------------------------------

def test_a_tool_round_trip_through_previous_response_id(client):
    first = create(client, **FORCED)
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    jsonschema.validate(json.loads(call.arguments), WEATHER)
    second = create(client, previous_response_id=first.id, tools=TOOLS, max_output_tokens=6,
                    input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees"}])
    # The same conversation sent whole, through the chat path: the same prompt, the same text.
    messages = [{"role": "user", "content": ASK},
                {"role": "assistant", "content": "", "tool_calls": [{"id": call.call_id, "type": "function", "function": {
                    "name": call.name, "arguments": call.arguments}}]},
                {"role": "tool", "tool_call_id": call.call_id, "content": "22 degrees"}]
    chat_tools = [{"type": "function", "function": {k: v for k, v in t.items() if k != "type"}} for t in TOOLS]
    whole = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=6,
                                           tools=chat_tools)
    assert second.usage.input_tokens == whole.usage.prompt_tokens > first.usage.input_tokens
    assert second.output_text == whole.choices[0].message.content
    assert second.previous_response_id == first.id


def test_the_call_items_can_be_sent_back_whole(client):
    first = create(client, **FORCED)
    items = [{"role": "user", "content": ASK}, *[o.model_dump(exclude_none=True) for o in first.output],
             {"type": "function_call_output", "call_id": first.output[0].call_id, "output": "22 degrees"}]
    again = create(client, input=items, tools=TOOLS, max_output_tokens=6)
    chained = create(client, previous_response_id=first.id, tools=TOOLS, max_output_tokens=6, input=items[-1:])
    assert again.output_text == chained.output_text
    assert again.usage.input_tokens == chained.usage.input_tokens


def test_a_named_function_choice_forces_that_function(client):
    tools = TOOLS + [{"type": "function", "name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}}]
    r = create(client, tools=tools, tool_choice={"type": "function", "name": "add"}, parallel_tool_calls=False,
               max_output_tokens=40)
    assert [o.name for o in r.output if o.type == "function_call"] == ["add"]


# ---- stored responses ------------------------------------------------------------------------------

def test_a_stored_response_is_retrieved_listed_and_deleted(client):
    r = create(client, input=[{"role": "user", "content": "Hi"}, {"role": "user", "content": ASK}])
    got = client.responses.retrieve(r.id)
    assert got.model_dump() == r.model_dump()
    items = client.responses.input_items.list(r.id)
    assert [i.content[0].text for i in items.data] == [ASK, "Hi"]  # newest first, as OpenAI lists them
    assert all(i.id.startswith("msg_") for i in items.data)
    asc = client.responses.input_items.list(r.id, order="asc", limit=1)
    assert [i.content[0].text for i in asc.data] == ["Hi"] and asc.has_more
    client.responses.delete(r.id)
    with pytest.raises(NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(NotFoundError):
        client.responses.delete(r.id)


def test_store_false_keeps_nothing(client):
    r = create(client, store=False)
    assert r.store is False
    with pytest.raises(NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(NotFoundError) as err:
        create(client, previous_response_id=r.id)
    assert err.value.body["param"] == "previous_response_id"


def test_a_streamed_response_is_stored_too(client, stop):
    events = list(create(client, stream=True, extra_body={"stop": [stop]}))
    final = events[-1].response
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_instructions_are_not_carried_over(client, server):
    first = create(client, instructions="Speak French.")
    second = create(client, previous_response_id=first.id, input="Again.")
    messages = [{"role": "user", "content": ASK}, {"role": "assistant", "content": first.output_text},
                {"role": "user", "content": "Again."}]
    assert second.usage.input_tokens == len(prompt_ids(server, messages))
    assert second.output_text == chat_text(client, messages)


def test_input_tokens_counts_the_prompt(client, server):
    first = create(client)
    r = httpx.post(server.url + "/v1/responses/input_tokens",
                   json={"model": MODEL, "input": "More.", "previous_response_id": first.id})
    messages = [{"role": "user", "content": ASK}, {"role": "assistant", "content": first.output_text},
                {"role": "user", "content": "More."}]
    assert r.json() == {"object": "response.input_tokens", "input_tokens": len(prompt_ids(server, messages))}


# ---- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, param, words", [
    ({"tools": [{"type": "web_search"}]}, "tools.0.type", "only function tools"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     "input.0.content.0", "text only"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type", "item_reference"),
    ({"reasoning": {"effort": "high"}}, "reasoning.effort", "does not reason"),
    ({"truncation": "auto"}, "truncation", "disabled"),
    ({"background": True}, "background", "background"),
    ({"conversation": "conv_1"}, "conversation", "previous_response_id"),
    ({"bogus": 1}, "bogus", "Unrecognized request argument"),
    ({"tool_choice": "required"}, "tool_choice", "tools"),
])
def test_what_cannot_be_honoured_is_refused_by_name(client, body, param, words):
    with pytest.raises(BadRequestError) as err:
        client.responses.create(model=MODEL, input=body.pop("input", ASK), extra_body=body)
    assert err.value.body["param"] == param and words in err.value.body["message"]


def test_another_model_is_not_found(client):
    with pytest.raises(NotFoundError):
        create(client, model="gpt-4o")


# ---- keys, the log and the metrics -------------------------------------------------------------------

@pytest.fixture(scope="module")
def keyed(tmp_path_factory, demo_data_dir):
    """A server with two stored keys, and a short retention, whose records the test reads."""
    from mistral_serve.server.store import Store

    folder = fresh_data_dir(tmp_path_factory, demo_data_dir, "responses-keys")
    store = Store(folder / "mistral-serve.db")
    keys = {name: store.create_key(name) for name in ("alice", "bob")}
    proc = ServerProcess(folder, "--response-retention-days", "0.5", env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc, keys, store
    proc.stop()


def test_stored_responses_are_scoped_to_their_key(keyed):
    proc, keys, store = keyed
    alice, bob = (OpenAI(base_url=proc.url + "/v1", api_key=keys[n], max_retries=0) for n in ("alice", "bob"))
    r = create(alice)
    assert alice.responses.retrieve(r.id).id == r.id
    with pytest.raises(NotFoundError):
        bob.responses.retrieve(r.id)
    with pytest.raises(NotFoundError):
        create(bob, previous_response_id=r.id)
    with pytest.raises(NotFoundError):
        bob.responses.delete(r.id)
    kept = store.get_response(r.id, "alice")
    assert kept.expires - kept.created == pytest.approx(0.5 * 86400)


def test_every_response_is_logged_and_counted(keyed):
    proc, keys, store = keyed
    alice = OpenAI(base_url=proc.url + "/v1", api_key=keys["alice"], max_retries=0)
    before = proc.metric("mistral_serve_generation_tokens_total")
    r = create(alice, max_output_tokens=5)
    list(create(alice, max_output_tokens=5, stream=True))
    assert proc.metric("mistral_serve_generation_tokens_total") == before + 10
    logged = store.generation(r.id.removeprefix("resp_"))
    assert logged.endpoint == "/v1/responses" and logged.key_name == "alice" and logged.completion_tokens == 5
    assert any(row[0] == "alice" and row[2] >= 2 for row in store.usage())


# ---- the OpenAI Agents SDK ------------------------------------------------------------------------------

def test_the_agents_sdk_runs_on_its_default_responses_model(server, client):
    from agents import Agent, ModelSettings, OpenAIResponsesModel, set_tracing_disabled

    set_tracing_disabled(True)
    sdk = AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)
    stop = ascii_stop(create(client, instructions="Answer briefly.").output_text)
    settings = ModelSettings(temperature=0, max_tokens=10, extra_body={"stop": [stop]})
    agent = Agent(name="storyteller", instructions="Answer briefly.", model=OpenAIResponsesModel(MODEL, sdk),
                  model_settings=settings)
    seen: list[str] = []
    tool_agent = _weather_agent(sdk, seen)
    result, tool_result = asyncio.run(runs(agent, tool_agent))
    assert result.final_output == create(client, instructions="Answer briefly.",
                                         extra_body={"stop": [stop]}).output_text
    # A forced call, run by the SDK, whose result ends the run.
    assert tool_result.final_output == "22 degrees" and len(seen) == 1


async def runs(agent, tool_agent):
    """Both agents' runs, on one event loop (their client's connections belong to it)."""
    from agents import Runner

    return (await Runner.run(agent, ASK),
            await Runner.run(tool_agent, "What is the weather in Paris?", max_turns=2))


def _weather_agent(sdk, seen: list):
    from agents import Agent, ModelSettings, OpenAIResponsesModel, function_tool

    @function_tool
    def get_weather(city: str, unit: str) -> str:
        """Weather for a city."""
        seen.append(city)
        return "22 degrees"

    return Agent(name="weather", model=OpenAIResponsesModel(MODEL, sdk), tools=[get_weather],
                 tool_use_behavior="stop_on_first_tool",
                 model_settings=ModelSettings(temperature=0, max_tokens=60, tool_choice="required",
                                              parallel_tool_calls=False))
