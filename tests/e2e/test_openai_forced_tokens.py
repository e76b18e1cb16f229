"""The official `openai` package against a live server: parameters checked by forcing tokens with
logit_bias (logit_bias itself, the presence, frequency and repetition penalties, stop_token_ids,
min_tokens and ignore_eos around the end-of-sequence token).

Why the demo model serves here: see tests/support/openai_helpers.py.
"""

from __future__ import annotations

import pytest

from support.openai_helpers import EOS_ID, MESSAGES, chat, prompt_ids, token_id, tokens_of


@pytest.fixture(scope="module")
def server(openai_server):
    """The `openai` client tests' open server (tests/e2e/conftest.py), shared by the test_openai_*.py
    files; `client` (the conftest's) talks to it."""
    return openai_server


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


# ---- extension parameters (vLLM names) through extra_body --------------------------------------

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
