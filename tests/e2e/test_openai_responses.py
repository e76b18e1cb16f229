"""The official `openai` package against a live server: the chat completion object and its ids, the
recorded user, streamed chunks and usage, system, developer, multi-turn and content-part
messages, errors raised as the client's exceptions, and the async client's concurrent requests.

Why the demo model serves here: see tests/support/openai_helpers.py.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from openai import AsyncOpenAI, BadRequestError, NotFoundError

from support.openai_helpers import MESSAGES, MODEL, chat, greedy, prompt_ids


@pytest.fixture(scope="module")
def server(openai_server):
    """The `openai` client tests' open server (tests/e2e/conftest.py), shared by the test_openai_*.py
    files; `client` (the conftest's) talks to it."""
    return openai_server


# ---- the response object ---------------------------------------------------------------------

def test_basic_response_fields(server, client):
    r = chat(client, max_tokens=7)
    assert r.id.startswith("chatcmpl-") and len(r.id) > len("chatcmpl-")
    assert r.object == "chat.completion"
    assert isinstance(r.created, int) and r.created > 1_600_000_000
    assert r.model == MODEL
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason == "length"
    assert r.usage.completion_tokens == 7
    assert r.usage.prompt_tokens == len(prompt_ids(server, MESSAGES))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.system_fingerprint and r.system_fingerprint.startswith("fp_")


def test_ids_are_unique(client):
    assert chat(client, max_tokens=1).id != chat(client, max_tokens=1).id


def test_user_is_recorded(server, client):
    r = chat(client, max_tokens=2, user="user-e2e-42")
    gen_id = r.id.removeprefix("chatcmpl-")
    rows = httpx.get(server.url + "/api/ai/generations", params={"limit": 50}).json()["data"]
    mine = [g for g in rows if g["id"] == gen_id]
    assert mine and mine[0]["user"] == "user-e2e-42"


# ---- streaming ---------------------------------------------------------------------------------

def test_stream_matches_greedy_and_ends_with_usage(client):
    expected = greedy(client, max_tokens=15)
    stream = chat(client, temperature=0, max_tokens=15, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == expected
    finishes = [c.choices[0].finish_reason for c in with_choices]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    # include_usage: one last chunk with no choices and the usage; the others carry none.
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 15
    assert last.usage.total_tokens == last.usage.prompt_tokens + 15
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = list(chat(client, max_tokens=4, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


# ---- messages ----------------------------------------------------------------------------------

def test_system_message_is_part_of_the_prompt(client):
    plain = chat(client, temperature=0)
    with_system = chat(client, temperature=0,
                       messages=[{"role": "system", "content": "You are a pirate."}, *MESSAGES])
    assert with_system.usage.prompt_tokens > plain.usage.prompt_tokens
    assert with_system.choices[0].message.content != plain.choices[0].message.content


def test_developer_role_acts_as_system(client):
    system = chat(client, temperature=0, messages=[{"role": "system", "content": "Be brief."}, *MESSAGES])
    developer = chat(client, temperature=0, messages=[{"role": "developer", "content": "Be brief."}, *MESSAGES])
    assert developer.choices[0].message.content == system.choices[0].message.content
    assert developer.usage.prompt_tokens == system.usage.prompt_tokens


def test_multi_turn_conversation(client):
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
             {"role": "user", "content": "Tell me a story about a cat."}]
    r = chat(client, temperature=0, messages=turns)
    single = chat(client, temperature=0)
    assert r.usage.prompt_tokens > single.usage.prompt_tokens
    assert r.choices[0].message.content != single.choices[0].message.content


def test_content_parts_equal_plain_string(client):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Tell me a story about a cat."}]}]
    a = chat(client, temperature=0, messages=parts)
    b = chat(client, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.prompt_tokens == b.usage.prompt_tokens


# ---- errors surface as the client's exceptions --------------------------------------------------

def test_client_exceptions(client):
    with pytest.raises(NotFoundError) as err:
        chat(client, model="no-such-model")
    assert err.value.status_code == 404 and err.value.code == "model_not_found"
    with pytest.raises(BadRequestError) as err:
        chat(client, temperature=5)
    assert err.value.param == "temperature"
    with pytest.raises(BadRequestError) as err:
        chat(client, stream=True, temperature=5)
    assert err.value.param == "temperature"


# ---- the async client --------------------------------------------------------------------------

def test_async_concurrent_streams(server):
    async def main() -> list[tuple[str, str | None, int]]:
        aclient = AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)

        async def one(i: int):
            stream = await aclient.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Request number {i}"}], max_tokens=10,
                temperature=1.0, seed=i, stream=True, stream_options={"include_usage": True})
            text, finish, usage = "", None, 0
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
                elif chunk.usage:
                    usage = chunk.usage.completion_tokens
            return text, finish, usage

        try:
            return await asyncio.gather(*(one(i) for i in range(8)))
        finally:
            await aclient.close()

    results = asyncio.run(main())
    assert len(results) == 8
    assert all(finish == "length" and usage == 10 and text for text, finish, usage in results)
    assert len({text for text, _, _ in results}) == 8


def test_async_seeded_sample_matches_sync(server, client):
    """A seeded sample does not depend on what else runs at the same time."""
    expected = chat(client, temperature=1.0, seed=99, max_tokens=8).choices[0].message.content

    async def main():
        aclient = AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)
        try:
            rs = await asyncio.gather(*(aclient.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=8, temperature=1.0, seed=99) for _ in range(4)))
        finally:
            await aclient.close()
        return [r.choices[0].message.content for r in rs]

    assert asyncio.run(main()) == [expected] * 4
