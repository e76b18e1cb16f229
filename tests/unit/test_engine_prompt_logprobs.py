"""Prompt logprobs (SamplingParams.prompt_logprobs) equal a plain forward pass of the whole prompt:
log_softmax(logits at i-1)[t_i] for every token after the first, the top alternatives too, read in
one step or in chunks, beside other requests, after a prefix-cached twin, and through a preemption;
max_tokens 0 scores a prompt and generates nothing."""

import pytest
import torch

from support.engine_helpers import assert_no_leaks, engine, greedy, model, prompt, run, run_one
from mistral_serve.engine.params import ParamError, SamplingParams
from mistral_serve.engine.prompt_logprobs import PromptScores, score_rows


def direct_logprobs(prompt_ids, window=None):
    """(len - 1, V) log_softmax of a full forward pass: row i-1 scores token i."""
    m = model(window)
    with torch.inference_mode():
        hidden = m(torch.tensor(prompt_ids, dtype=torch.long))
        return torch.log_softmax(m.logits(hidden), dim=-1)[:-1]


def assert_matches_direct(entries, prompt_ids, top, window=None):
    ref = direct_logprobs(prompt_ids, window)
    assert len(entries) == len(prompt_ids)
    assert entries[0] is None
    for i, e in enumerate(entries[1:], start=1):
        assert e.token_id == prompt_ids[i]
        assert e.logprob == pytest.approx(float(ref[i - 1, prompt_ids[i]]), abs=2e-4), f"position {i}"
        values, ids = torch.topk(ref[i - 1], top) if top else (torch.tensor([]), torch.tensor([]))
        assert [t for t, _ in e.top] == ids.tolist(), f"position {i}"
        assert [v for _, v in e.top] == pytest.approx(values.tolist(), abs=2e-4)


def scoring(max_tokens=1, top=3, **kw) -> SamplingParams:
    return greedy(max_tokens, prompt_logprobs=top, **kw) if max_tokens else \
        SamplingParams(temperature=0.0, max_tokens=0, prompt_logprobs=top, **kw)


def test_score_rows_is_the_log_softmax_of_each_row_at_its_target():
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    got = score_rows(logits, torch.tensor([0, 2]), top=2)
    ref = torch.log_softmax(logits, -1)
    assert [g.token_id for g in got] == [0, 2]
    assert [g.logprob for g in got] == pytest.approx([float(ref[0, 0]), float(ref[1, 2])])
    assert [t for t, _ in got[0].top] == [2, 1] and got[1].top[0][0] == 0


def test_a_chunk_scores_its_positions_against_the_next_prompt_token():
    scores = PromptScores([5, 6, 7, 8], top=0)
    assert scores.scored_positions(0, 2) == range(0, 2) and scores.targets(range(0, 2)) == [6, 7]
    assert scores.scored_positions(2, 2) == range(2, 3)  # position 3 predicts a new token
    assert scores.scored_positions(3, 1) == range(3, 3)


@pytest.mark.parametrize("length,chunk", [(40, 64), (150, 64), (150, 16), (97, 33)])
def test_prompt_logprobs_equal_a_direct_forward_pass_whatever_the_chunking(length, chunk):
    p = prompt(length, seed=length + chunk)
    eng = engine(max_num_batched_tokens=chunk)
    got = run_one(eng, p, scoring(max_tokens=2, top=3))
    first = got.outputs[0]
    assert first.prompt_logprobs is not None
    assert all(out.prompt_logprobs is None for out in got.outputs[1:]), "prompt logprobs given twice"
    assert_matches_direct(first.prompt_logprobs, p, top=3)
    assert len(got.tokens[0]) == 2
    assert_no_leaks(eng)


def test_prompt_logprobs_with_a_sliding_window_equal_the_windowed_forward_pass():
    p = prompt(100, seed=3)
    got = run_one(engine(window=8, max_num_batched_tokens=24), p, scoring(top=1))
    assert_matches_direct(got.outputs[0].prompt_logprobs, p, top=1, window=8)


def test_a_prompt_already_in_the_prefix_cache_is_still_scored_in_full():
    p = prompt(130, seed=7)
    eng = engine(max_num_batched_tokens=64)
    run_one(eng, p, greedy(1))  # leaves the prompt's full blocks in the cache
    hits_before = eng.blocks.hits
    got = run_one(eng, p, scoring(top=2))
    assert eng.blocks.hits == hits_before, "the scored prompt took its prefix from the cache"
    assert got.outputs[-1].cached_tokens == 0
    assert_matches_direct(got.outputs[0].prompt_logprobs, p, top=2)
    # and it left its own blocks for the next request
    run_one(eng, p, greedy(1))
    assert eng.blocks.hits > hits_before
    assert_no_leaks(eng)


def test_scoring_beside_other_requests_changes_neither_them_nor_the_scores():
    prompts = [prompt(n, seed=20 + n) for n in (70, 33, 120, 9)]
    eng = engine(max_num_batched_tokens=48)
    alone = [run_one(engine(max_num_batched_tokens=48), p, greedy(5)).tokens[0] for p in prompts]
    mixed = run(eng, [(prompts[0], scoring(max_tokens=5, top=2)), (prompts[1], greedy(5)),
                      (prompts[2], scoring(max_tokens=0, top=0)), (prompts[3], greedy(5))])
    got = list(mixed.values())
    assert got[0].tokens[0] == alone[0] and got[1].tokens[0] == alone[1] and got[3].tokens[0] == alone[3]
    assert_matches_direct(got[0].outputs[0].prompt_logprobs, prompts[0], top=2)
    assert_matches_direct(got[2].outputs[0].prompt_logprobs, prompts[2], top=0)
    assert all(out.prompt_logprobs is None for c in (got[1], got[3]) for out in c.outputs)
    assert_no_leaks(eng)


def test_max_tokens_zero_scores_the_prompt_and_generates_nothing():
    p = prompt(90, seed=11)
    eng = engine(max_num_batched_tokens=32)
    got = run_one(eng, p, scoring(max_tokens=0, top=1))
    assert got.finished and got.finish == {0: "length"}
    assert got.tokens.get(0, []) == [] and got.text() == ""
    assert got.outputs[-1].prompt_tokens == 90
    assert_matches_direct(got.outputs[0].prompt_logprobs, p, top=1)
    assert_no_leaks(eng)


def test_max_tokens_zero_with_n_samples_ends_each_without_a_token():
    p = prompt(20, seed=12)
    eng = engine()
    got = run_one(eng, p, SamplingParams(n=3, temperature=0.0, max_tokens=0, prompt_logprobs=0))
    assert got.finish == {0: "length", 1: "length", 2: "length"}
    assert all(not ids for ids in got.tokens.values())
    assert sum(out.prompt_logprobs is not None for out in got.outputs) == 1
    assert_no_leaks(eng)


def test_a_prompt_of_one_token_has_one_entry_none():
    got = run_one(engine(), [1], scoring(max_tokens=0, top=2))
    assert got.outputs[0].prompt_logprobs == [None]


def test_scores_survive_a_preemption_mid_prompt():
    # 9 blocks of 16 tokens: the long scored prompt and the decoding ones cannot all fit, so the
    # newest is preempted and read again; its scores must still be those of one clean pass.
    p_long = prompt(100, seed=30)
    others = [prompt(30, seed=31 + i) for i in range(2)]
    eng = engine(max_num_batched_tokens=16, kv_cache_memory=str(9 * 8192))  # 8 KiB a block
    got = run(eng, [(others[0], greedy(20)), (others[1], greedy(20)), (p_long, scoring(max_tokens=3, top=1))])
    assert eng.scheduler.num_preemptions > 0
    scored = list(got.values())[2]
    assert_matches_direct(scored.outputs[0].prompt_logprobs, p_long, top=1)
    assert_no_leaks(eng)


def test_scores_come_from_the_raw_logits_not_the_sampling_controls():
    p = prompt(30, seed=40)
    plain = run_one(engine(), p, scoring(top=2)).outputs[0].prompt_logprobs
    shaped = run_one(engine(), p, SamplingParams(temperature=0.3, repetition_penalty=1.8, max_tokens=1,
                                                 logit_bias={p[5]: 50.0}, prompt_logprobs=2,
                                                 seed=1)).outputs[0].prompt_logprobs
    assert [e.logprob for e in shaped[1:]] == pytest.approx([e.logprob for e in plain[1:]], abs=1e-5)


@pytest.mark.parametrize("fields,param", [
    ({"max_tokens": 0}, "max_tokens"),
    ({"prompt_logprobs": -1}, "prompt_logprobs"),
    ({"prompt_logprobs": 21}, "prompt_logprobs"),
])
def test_bad_scoring_params_name_the_field(fields, param):
    with pytest.raises(ParamError) as info:
        SamplingParams(**fields)
    assert info.value.param == param
