"""The official `openai` package against a live server: every parameter, checked by its effect.

The demo model has random weights, so its text means nothing, but it is a real model: greedy
decoding is deterministic, a seed repeats a sample, and every sampling control changes the
tokens in a way a test can see. Each test below would fail if the server ignored the parameter
it is about.
"""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from openai import AsyncOpenAI, BadRequestError, NotFoundError, OpenAI

MODEL = "open-mistral-7b"
MESSAGES = [{"role": "user", "content": "Tell me a story about a cat."}]
EOS_ID = 2


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


def chat(client: OpenAI, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", MESSAGES)
    kw.setdefault("max_tokens", 12)
    return client.chat.completions.create(**kw)


def greedy(client: OpenAI, **kw) -> str:
    return chat(client, temperature=0, **kw).choices[0].message.content


def token_id(server, text: str) -> int:
    """The id of a word that the tokenizer writes as one token."""
    ids = httpx.post(server.url + "/tokenize", json={"prompt": text, "add_special_tokens": False}).json()["tokens"]
    assert len(ids) == 1, (text, ids)
    return ids[0]


def prompt_ids(server, messages) -> list[int]:
    return httpx.post(server.url + "/tokenize", json={"messages": messages}).json()["tokens"]


def tokens_of(response, i: int = 0) -> list[str]:
    return [e.token for e in response.choices[i].logprobs.content]


def ascii_stop(text: str, length: int = 3) -> str:
    """A substring of `text` from around its middle, made of plain ASCII letters and spaces."""
    start = len(text) // 3
    for i in range(start, len(text) - length):
        piece = text[i:i + length]
        plain = all(ch.isascii() and (ch.isalnum() or ch == " ") for ch in piece) and piece.strip()
        if plain and text.find(piece) > 0:
            return piece
    raise AssertionError(f"no ASCII substring in {text!r}")


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


# ---- sampling parameters -----------------------------------------------------------------------

def test_temperature_zero_is_deterministic(client):
    assert greedy(client) == greedy(client)


def test_seed_repeats_a_sample_and_different_seeds_differ(client):
    a = chat(client, temperature=1.0, seed=1234).choices[0].message.content
    b = chat(client, temperature=1.0, seed=1234).choices[0].message.content
    c = chat(client, temperature=1.0, seed=4321).choices[0].message.content
    assert a == b
    assert a != c
    # A sample is not the greedy answer (the seed does sample).
    assert a != greedy(client)


def test_max_tokens_and_max_completion_tokens(client):
    r = chat(client, max_tokens=5)
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
    r = chat(client, max_tokens=None, max_completion_tokens=3)
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"
    # Both given: max_completion_tokens wins (max_tokens is its deprecated alias).
    r = chat(client, max_tokens=9, max_completion_tokens=4)
    assert r.usage.completion_tokens == 4


def test_n_gives_independent_choices(client):
    r = chat(client, n=3, temperature=1.0, max_tokens=6)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert len(set(texts)) == 3
    assert all(c.finish_reason == "length" for c in r.choices)
    assert r.usage.completion_tokens == 18


def test_stop_string_cuts_before_it(client):
    full = greedy(client, max_tokens=30)
    stop = ascii_stop(full)
    expected = full[:full.find(stop)]
    r = chat(client, temperature=0, max_tokens=30, stop=stop)
    assert r.choices[0].message.content == expected
    assert stop not in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < 30
    # A list: the earliest of its strings ends the answer.
    late = full[-4:]
    r = chat(client, temperature=0, max_tokens=30, stop=[late, stop])
    assert r.choices[0].message.content == full[:min(full.find(late), full.find(stop))]


def test_stop_string_when_streaming(client):
    full = greedy(client, max_tokens=30)
    stop = ascii_stop(full)
    chunks = list(chat(client, temperature=0, max_tokens=30, stop=stop, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full[:full.find(stop)]
    assert stop not in text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_logit_bias_forces_a_token(server, client):
    cat = token_id(server, "cat")
    r = chat(client, temperature=1.0, max_tokens=6, logit_bias={str(cat): 100}, logprobs=True)
    tokens = tokens_of(r)
    assert len(tokens) == 6
    assert all(t.strip() == "cat" for t in tokens), tokens


def _forced(client, bias_id: int, n: int) -> tuple[str, list[float]]:
    """With `bias_id` forced at every position: its text, and how far its raw logprob is below
    the best one at each position (logprobs are the model's own, before any bias)."""
    r = chat(client, temperature=0, max_tokens=n, logit_bias={str(bias_id): 100}, logprobs=True,
             top_logprobs=1)
    entries = r.choices[0].logprobs.content
    assert len(entries) == n and len({e.token for e in entries}) == 1
    return entries[0].token, [e.top_logprobs[0].logprob - e.logprob for e in entries]


def _calibrated_bias(server, client, n: int, penalty: float = 2.0) -> tuple[int, float]:
    """A token and a bias just large enough to make it the greedy choice at all n positions of
    an all-that-token answer (0.2 to spare), yet small enough that a penalty for having produced
    it already takes the lead away at some position after the first (by 0.3 or more)."""
    for word in ("cat", "the", "story", "house", "blue"):
        tid = token_id(server, word)
        _, gaps = _forced(client, tid, n)
        bias = max(gaps) + 0.2
        if bias - penalty < max(gaps[1:]) - 0.3:
            return tid, bias
    raise AssertionError("no candidate token can be made dominant by a bias a penalty can overcome")


@pytest.mark.parametrize("penalty", ["presence_penalty", "frequency_penalty"])
def test_presence_and_frequency_penalties(server, client, penalty):
    n = 10
    tid, bias = _calibrated_bias(server, client, n)
    plain = chat(client, temperature=0, max_tokens=n, logit_bias={str(tid): bias}, logprobs=True)
    forced = tokens_of(plain)
    assert len(set(forced)) == 1, forced  # without a penalty the bias wins everywhere
    penalised = chat(client, temperature=0, max_tokens=n, logit_bias={str(tid): bias}, logprobs=True,
                     **{penalty: 2.0})
    assert len(set(tokens_of(penalised))) > 1
    assert tokens_of(penalised)[0] == forced[0]  # nothing to penalise before the first token
    # A negative penalty encourages repeats: still all the same token.
    encouraged = chat(client, temperature=0, max_tokens=n, logit_bias={str(tid): bias}, logprobs=True,
                      **{penalty: -2.0})
    assert tokens_of(encouraged) == forced


def test_logprobs_and_top_logprobs(client):
    r = chat(client, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == 8 == r.usage.completion_tokens
    assert "".join(e.token for e in content) == r.choices[0].message.content
    for e in content:
        assert e.logprob <= 0.0 and math.isfinite(e.logprob)
        assert e.bytes == list(e.token.encode()) or "\ufffd" in e.token
        assert len(e.top_logprobs) == 3
        values = [t.logprob for t in e.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert all(v <= 0.0 for v in values)
        # Greedy: the chosen token is a most likely one (ties may be listed in either order).
        assert e.logprob == pytest.approx(values[0], abs=1e-6)
        assert e.token in [t.token for t in e.top_logprobs if t.logprob == pytest.approx(values[0], abs=1e-6)]
    # Without logprobs: none.
    assert chat(client, max_tokens=2).choices[0].logprobs is None
    # logprobs without top_logprobs: per-token entries with empty top lists.
    r = chat(client, temperature=0, max_tokens=3, logprobs=True)
    assert [len(e.top_logprobs) for e in r.choices[0].logprobs.content] == [0, 0, 0]


def test_user_is_recorded(server, client):
    r = chat(client, max_tokens=2, user="user-e2e-42")
    gen_id = r.id.removeprefix("chatcmpl-")
    rows = httpx.get(server.url + "/api/ai/generations", params={"limit": 50}).json()["data"]
    mine = [g for g in rows if g["id"] == gen_id]
    assert mine and mine[0]["user"] == "user-e2e-42"


# ---- extension parameters (vLLM names) through extra_body --------------------------------------

def _all_greedy_choices(response) -> bool:
    """Every chosen token is a most likely one at its position."""
    return all(e.logprob == pytest.approx(e.top_logprobs[0].logprob, abs=1e-6)
               for e in response.choices[0].logprobs.content)


def test_top_k_one_is_greedy(client):
    expected = greedy(client, max_tokens=10)
    r = chat(client, temperature=1.0, seed=7, max_tokens=10, extra_body={"top_k": 1})
    assert r.choices[0].message.content == expected
    # Without top_k the same seed samples something else.
    assert chat(client, temperature=1.0, seed=7, max_tokens=10).choices[0].message.content != expected


def test_min_p_one_keeps_only_the_most_likely(client):
    r = chat(client, temperature=1.0, seed=7, max_tokens=10, logprobs=True, top_logprobs=1,
             extra_body={"min_p": 1.0})
    assert _all_greedy_choices(r)
    # The same tokens as greedy decoding up to a tie: min_p = 1 keeps every token as likely as
    # the best (bf16 logits tie often on the random demo model) and draws among them, where
    # greedy takes the first. At the first difference, the two must have been tied.
    best = chat(client, temperature=0, max_tokens=10, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    ours = r.choices[0].logprobs.content
    first = next((i for i, (a, b) in enumerate(zip(ours, best)) if a.token != b.token), None)
    if first is None:
        assert len(ours) == len(best)
    else:
        top = best[first].top_logprobs
        assert top[0].logprob == pytest.approx(top[1].logprob, abs=1e-6), (first, top)
        assert ours[first].token in (top[0].token, top[1].token)
    sampled = chat(client, temperature=1.0, seed=7, max_tokens=10, logprobs=True, top_logprobs=1)
    assert not _all_greedy_choices(sampled)


def test_top_p_tiny_keeps_only_the_most_likely(client):
    r = chat(client, temperature=1.0, seed=11, max_tokens=10, top_p=1e-9, logprobs=True, top_logprobs=1)
    assert _all_greedy_choices(r)


def test_repetition_penalty_changes_output(server, client):
    """A prompt token, biased to be just barely the greedy first token: a repetition penalty on
    tokens already seen (the prompt included) takes the lead away from it."""
    ids = prompt_ids(server, MESSAGES)
    candidates = [t for t in dict.fromkeys(ids) if t > 1000][:4]
    assert candidates
    changed = []
    for tid in candidates:
        token, (gap,) = _forced(client, tid, 1)
        bias = {str(tid): gap + 0.05}
        forced = tokens_of(chat(client, temperature=0, max_tokens=1, logit_bias=bias, logprobs=True))[0]
        assert forced == token  # the bias just suffices without the penalty
        penalised = chat(client, temperature=0, max_tokens=1, logit_bias=bias, logprobs=True,
                         extra_body={"repetition_penalty": 10.0})
        changed.append(tokens_of(penalised)[0] != forced)
        if changed[-1]:
            break
    assert any(changed)


def test_stop_token_ids(server, client):
    cat = token_id(server, "cat")
    forced = {str(cat): 100}
    r = chat(client, max_tokens=5, logit_bias=forced)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5
    r = chat(client, max_tokens=5, logit_bias=forced, extra_body={"stop_token_ids": [cat]})
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 1
    assert r.choices[0].message.content == ""  # the stop token itself is not part of the text


def test_eos_min_tokens_and_ignore_eos(client):
    eos = {str(EOS_ID): 100}
    r = chat(client, max_tokens=8, logit_bias=eos)
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 1
    assert r.choices[0].message.content == ""
    # min_tokens: the end-of-sequence token is banned until 4 tokens exist, then it comes.
    r = chat(client, max_tokens=8, logit_bias=eos, extra_body={"min_tokens": 4})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 5
    assert r.choices[0].message.content
    # ignore_eos: generation runs on to max_tokens.
    r = chat(client, max_tokens=8, logit_bias=eos, extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 8


def test_min_tokens_also_holds_back_stop_token_ids(server, client):
    cat = token_id(server, "cat")
    r = chat(client, max_tokens=8, logit_bias={str(cat): 100},
             extra_body={"stop_token_ids": [cat], "min_tokens": 3})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 4


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


# ---- /v1/completions -----------------------------------------------------------------------------

PROMPT = "Once upon a time"


def complete(client: OpenAI, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("prompt", PROMPT)
    kw.setdefault("max_tokens", 8)
    return client.completions.create(**kw)


def test_completion_basic(client):
    r = complete(client, temperature=0)
    assert r.object == "text_completion" and r.model == MODEL and r.id.startswith("cmpl-")
    assert len(r.choices) == 1 and r.choices[0].index == 0 and r.choices[0].text
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8
    assert complete(client, temperature=0).choices[0].text == r.choices[0].text


def test_completion_list_of_prompts(client):
    one = complete(client, temperature=0, prompt="The sky").choices[0].text
    two = complete(client, temperature=0, prompt="A dog").choices[0].text
    assert one != two
    r = complete(client, temperature=0, prompt=["The sky", "A dog"], n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    # Choice k*n + i is sample i of prompt k.
    assert [c.text for c in r.choices] == [one, one, two, two]
    assert r.usage.completion_tokens == 32


def test_completion_token_id_prompt_equals_text_prompt(server, client):
    ids = httpx.post(server.url + "/tokenize", json={"prompt": PROMPT}).json()["tokens"]
    by_ids = complete(client, temperature=0, prompt=ids).choices[0].text
    assert by_ids == complete(client, temperature=0).choices[0].text


def test_completion_echo(client):
    plain = complete(client, temperature=0).choices[0].text
    echoed = complete(client, temperature=0, echo=True).choices[0].text
    assert echoed.startswith(PROMPT)
    assert echoed == PROMPT + plain


def test_completion_logprobs(client):
    r = complete(client, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8
    assert all(v <= 0.0 for v in lp.token_logprobs)
    for top in lp.top_logprobs:
        assert 1 <= len(top) <= 2 and all(v <= 0.0 for v in top.values())
    assert lp.text_offset == sorted(lp.text_offset)
    assert complete(client, max_tokens=2).choices[0].logprobs is None


def test_completion_text_agrees_with_its_logprobs(client):
    """The text is what the tokens spell, offsets point into it: a raw completion continues the
    prompt, so a first token that starts with a space keeps it (' sotto', not 'sotto')."""
    r = complete(client, temperature=0, logprobs=1)
    choice = r.choices[0]
    assert "".join(choice.logprobs.tokens) == choice.text
    for token, offset in zip(choice.logprobs.tokens, choice.logprobs.text_offset):
        assert choice.text[offset:offset + len(token)] == token


def test_completion_stream(client):
    expected = complete(client, temperature=0).choices[0].text
    chunks = list(complete(client, temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8


def test_completion_stop(client):
    full = complete(client, temperature=0, max_tokens=30).choices[0].text
    stop = ascii_stop(full)
    r = complete(client, temperature=0, max_tokens=30, stop=stop)
    assert r.choices[0].text == full[:full.find(stop)] and r.choices[0].finish_reason == "stop"


# ---- models -------------------------------------------------------------------------------------

def test_models_list_and_retrieve(client):
    models = list(client.models.list())
    assert [m.id for m in models] == [MODEL]
    assert models[0].object == "model" and models[0].owned_by
    m = client.models.retrieve(MODEL)
    assert m.id == MODEL and m.object == "model" and isinstance(m.created, int)
    assert "demo" in m.model_extra["display_name"].lower()
    with pytest.raises(NotFoundError):
        client.models.retrieve("no-such-model")
