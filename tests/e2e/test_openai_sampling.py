"""The official `openai` package against a live server: the sampling parameters, each checked by its
effect (temperature, seed, max_tokens, n, stop strings, logprobs; top_k, min_p and top_p).

Why the demo model serves here: see tests/support/openai_helpers.py.
"""

from __future__ import annotations

import math

import pytest

from support.openai_helpers import ascii_stop, chat, greedy


@pytest.fixture(scope="module")
def server(openai_server):
    """The `openai` client tests' open server (tests/e2e/conftest.py), shared by the test_openai_*.py
    files; `client` (the conftest's) talks to it."""
    return openai_server


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
