"""Every tool call the server returns has an id of its own, in Mistral's 9-character form, whatever
id the model wrote after `[TOOL_CALLS]` (the demo wrote the same one, 0aA120aA1, in 3 of 4 fresh
requests, and clients that key results by id mixed them up); a conversation that sends the ids
back is answered. Forced calls (tool_choice "required") are grammar-constrained, so even the
demo's random weights always make at least one call."""

from __future__ import annotations

import re

import pytest
from openai import OpenAI

MODEL = "open-mistral-7b"
MISTRAL_ID = re.compile(r"[a-zA-Z0-9]{9}")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}}}]
ASK = [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]
REQUESTS = 12


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300)


def forced(client: OpenAI, **extra):
    return client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                          max_tokens=60, **extra)


def test_fresh_requests_never_share_a_call_id(client):
    ids = []
    for _ in range(REQUESTS):
        r = forced(client)
        assert r.choices[0].finish_reason == "tool_calls"
        ids += [c.id for c in r.choices[0].message.tool_calls]
    assert all(MISTRAL_ID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids), ids


def test_two_choices_and_two_calls_have_different_ids(client):
    # n=2 with the same seed: the two answers are written alike, ids included; only the server
    # tells them apart.
    r = forced(client, n=2, seed=3)
    ids = [c.id for choice in r.choices for c in choice.message.tool_calls]
    assert len(ids) >= 2 and len(set(ids)) == len(ids), ids


def test_streamed_calls_have_fresh_ids(client):
    ids = []
    for _ in range(4):
        with client.chat.completions.stream(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                            max_tokens=60) as stream:
            deltas = [d for e in stream if e.type == "chunk" and e.chunk.choices
                      for d in (e.chunk.choices[0].delta.tool_calls or [])]
            final = stream.get_final_completion()
        announced = [d.id for d in deltas if d.id]
        assert announced == [c.id for c in final.choices[0].message.tool_calls]
        ids += announced
    assert all(MISTRAL_ID.fullmatch(i) for i in ids) and len(set(ids)) == len(ids), ids


def test_ids_sent_back_are_answered_and_the_next_calls_are_new(client):
    first = forced(client)
    message = first.choices[0].message
    history = ASK + [message.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": c.id, "content": f"{18 + k} degrees"} for k, c in enumerate(message.tool_calls)]
    again = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS, tool_choice="required",
                                           max_tokens=60)
    assert again.choices[0].finish_reason == "tool_calls"
    old = {c.id for c in message.tool_calls}
    new = [c.id for c in again.choices[0].message.tool_calls]
    assert old.isdisjoint(new) and all(MISTRAL_ID.fullmatch(i) for i in new)
