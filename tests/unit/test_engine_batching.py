"""Continuous batching must not change results: batched greedy == the plain single-sequence loop,
through chunked prefill, sliding windows, preemption and the context limit."""

import pytest
import torch

from support.engine_helpers import assert_no_leaks, engine, greedy, model, prompt, reference, run, run_one
from mistral_serve.engine.engine import ContextLengthError
from mistral_serve.engine.params import ParamError, SamplingParams
from mistral_serve.engine.runner import ModelRunner
from mistral_serve.engine.scheduler import Batch

LENGTHS = [3, 150, 17, 64, 5, 99, 31, 16, 120, 4, 47, 33, 8, 150, 72, 15, 100, 3, 56, 9, 140, 23, 81, 12]


def spy_batches(eng):
    """Record (number of tokens, [(prompt length, n)]) of every batch the runner computes."""
    seen = []
    run_batch = eng.runner.run

    def wrapped(batch, rows):
        seen.append((batch.num_tokens, [(len(s.prompt_ids), s.num_computed, n) for s, n in batch.items]))
        return run_batch(batch, rows)

    eng.runner.run = wrapped
    return seen


@pytest.mark.parametrize("window", [None, 8])
def test_24_mixed_requests_together_equal_each_alone(window):
    assert len(LENGTHS) == 24 and min(LENGTHS) == 3 and max(LENGTHS) == 150
    max_new = [6 + (i * 5) % 11 for i in range(24)]
    prompts = [prompt(n, seed=100 + i) for i, n in enumerate(LENGTHS)]
    eng = engine(window, max_num_batched_tokens=48)
    seen = spy_batches(eng)
    got = run(eng, [(p, greedy(m)) for p, m in zip(prompts, max_new)])
    for (rid, c), p, m in zip(got.items(), prompts, max_new):
        assert c.finished and c.finish[0] == "length"
        assert c.tokens[0] == reference(p, m, window), f"request of {len(p)} tokens differs"
        assert c.outputs[-1].prompt_tokens == len(p)
    assert max(n for n, _ in seen) <= 48
    # Prompts were really read in chunks, next to other sequences' decodes.
    assert any(start > 0 and start + n < plen for _, items in seen for plen, start, n in items)
    assert any(len(items) > 1 and any(n == 1 for _, _, n in items) and any(n > 1 for _, _, n in items)
               for _, items in seen)
    assert_no_leaks(eng)


@pytest.mark.parametrize("window", [None, 8])
def test_tiny_token_budget_still_gives_the_reference(window):
    prompts = [prompt(n, seed=7 + n) for n in (37, 5, 21)]
    eng = engine(window, max_num_batched_tokens=5, max_num_seqs=2)
    got = run(eng, [(p, greedy(10)) for p in prompts])
    for c, p in zip(got.values(), prompts):
        assert c.tokens[0] == reference(p, 10, window)
    assert_no_leaks(eng)


def test_the_test_model_depends_on_the_window_and_the_whole_prefix():
    # Guards for the tests here: the window changes the greedy tokens, and so does a token far
    # back in the prompt, so a cache that lost or misplaced keys would change the output.
    p = prompt(60, seed=3)
    assert reference(p, 12, 8) != reference(p, 12, None)
    assert reference(p, 12) != reference([1, 5000] + p[2:], 12)


@pytest.mark.parametrize("window", [None, 8])
def test_preemption_under_a_tiny_block_budget_keeps_outputs(window):
    per_block = 2 * 2 * 16 * 2 * 16 * 4  # layers * k/v * block_size * kv heads * head_dim * fp32
    num_blocks = 12 if window is None else 8  # a window frees blocks as sequences advance
    eng = engine(window, kv_cache_memory=str(num_blocks * per_block), max_num_batched_tokens=64)
    assert eng.blocks.num_blocks == num_blocks
    prompts = [prompt(n, seed=500 + n) for n in (40, 25, 33, 18, 45, 30)]
    seen = spy_batches(eng)
    got = run(eng, [(p, greedy(40)) for p in prompts])
    assert eng.scheduler.num_preemptions > 0
    for c, p in zip(got.values(), prompts):
        assert c.finish[0] == "length"
        assert c.tokens[0] == reference(p, 40, window)
    assert max(n for n, _ in seen) <= 64
    assert_no_leaks(eng)


@pytest.mark.parametrize("window", [None, 8])
def test_chunked_prefill_gives_the_logits_of_one_pass(window):
    m = model(window)
    tokens = prompt(70, seed=11)
    with torch.inference_mode():
        full = m.logits(m(torch.tensor(tokens)))  # (70, V), one pass, no cache
    runner = ModelRunner(m, num_blocks=12, block_size=8)
    table = [9, 2, 7, 0, 11, 4, 5, 1, 3]  # scattered blocks: slot mapping must follow the table

    class Seq:  # what the runner reads from a sequence
        def __init__(self):
            self.tokens, self.num_computed = tokens, 0

    s = Seq()
    ends = []
    for n in (13, 1, 5, 8, 30, 13):
        logits = runner.run(Batch([(s, n)], tables=[table]), [0])
        s.num_computed += n
        ends.append(s.num_computed)
        torch.testing.assert_close(logits[0], full[s.num_computed - 1], atol=2e-5, rtol=1e-4)
    assert ends[-1] == 70
    # One pass over the whole prompt through the paged cache agrees too.
    s2 = Seq()
    table2 = [6, 8, 10, 0, 1, 2, 3, 4, 5]
    logits = runner.run(Batch([(s2, 70)], tables=[table2]), [0])
    torch.testing.assert_close(logits[0], full[-1], atol=2e-5, rtol=1e-4)


def test_runner_mixes_sequences_in_one_flat_batch():
    m = model(8)
    a, b = prompt(30, seed=1), prompt(12, seed=2)
    with torch.inference_mode():
        full_a = m.logits(m(torch.tensor(a)))
        full_b = m.logits(m(torch.tensor(b)))
    runner = ModelRunner(m, num_blocks=16, block_size=4)

    class Seq:
        def __init__(self, tokens, table):
            self.tokens, self.table, self.num_computed = tokens, table, 0

    sa, sb = Seq(a, [15, 14, 13, 12, 11, 10, 9, 8]), Seq(b, [0, 1, 2])
    steps = [((sa, 10), (sb, 7)), ((sb, 5), (sa, 3)), ((sa, 17),)]
    for items in steps:
        logits = runner.run(Batch(list(items), tables=[s.table for s, _ in items]), list(range(len(items))))
        for row, (s, n) in enumerate(items):
            s.num_computed += n
            ref = full_a if s is sa else full_b
            torch.testing.assert_close(logits[row], ref[s.num_computed - 1], atol=2e-5, rtol=1e-4)


def test_context_limit_with_max_tokens_raises_naming_the_numbers():
    eng = engine(max_model_len=48)
    p = prompt(30, seed=1)
    with pytest.raises(ContextLengthError) as info:
        eng.add_request(p, SamplingParams(max_tokens=19))
    msg = str(info.value)
    assert "30" in msg and "19" in msg and "48" in msg
    assert info.value.param == "max_tokens"
    assert isinstance(info.value, ParamError)
    assert not eng.requests
    eng.add_request(p, greedy(18))  # exactly fits
    with pytest.raises(ContextLengthError) as info:
        eng.add_request(prompt(48, seed=2), SamplingParams())
    assert "48" in str(info.value)


def test_without_max_tokens_generation_stops_at_the_context_end():
    eng = engine(max_model_len=48)
    p = prompt(30, seed=1)
    c = run_one(eng, p, SamplingParams(temperature=0, ignore_eos=True))
    assert c.finish[0] == "length"
    assert len(c.tokens[0]) == 18
    assert c.tokens[0] == reference(p, 18)
    assert_no_leaks(eng)


def test_context_is_bounded_by_the_kv_cache_capacity_too():
    per_block = 2 * 2 * 16 * 2 * 16 * 4
    eng = engine(kv_cache_memory=str(3 * per_block))  # 3 blocks of 16: 48 tokens in all
    p = prompt(40, seed=4)
    with pytest.raises(ContextLengthError):
        eng.add_request(p, SamplingParams(max_tokens=9))
    c = run_one(eng, p, SamplingParams(temperature=0, ignore_eos=True))
    assert c.finish[0] == "length" and c.tokens[0] == reference(p, 8)


def test_invalid_requests_are_refused_before_admission():
    eng = engine()
    for bad, param in (([], "prompt"), ([1, 32768], "prompt"), ([1, -1], "prompt")):
        with pytest.raises(ParamError) as info:
            eng.add_request(bad, SamplingParams(max_tokens=2))
        assert info.value.param == param
    with pytest.raises(ParamError) as info:
        eng.add_request([1, 2000], SamplingParams(max_tokens=2, logit_bias={40000: 1.0}))
    assert info.value.param == "logit_bias"
    eng.add_request([1, 2000], SamplingParams(max_tokens=2), request_id="same")
    with pytest.raises(ValueError):
        eng.add_request([1, 2000], SamplingParams(max_tokens=2), request_id="same")
    assert list(eng.requests) == ["same"]


def test_outputs_stream_token_by_token_and_finish_once():
    eng = engine()
    p = prompt(20, seed=5)
    rid = eng.add_request(p, greedy(5))
    per_step = []
    while eng.has_unfinished():
        for out in eng.step():
            assert out.request_id == rid
            per_step.append([len(d.token_ids) for d in out.deltas])
            finished = out.finished
    assert per_step == [[1]] * 5 and finished
    assert eng.step() == []


def test_kv_memory_plan():
    per_block = 2 * 2 * 16 * 2 * 16 * 4
    assert engine(kv_cache_memory=str(5 * per_block + 100)).blocks.num_blocks == 5
    assert engine(kv_cache_memory="5 MiB").blocks.num_blocks == 5 * 1024**2 // per_block
    # Never more blocks than max_num_seqs full contexts need.
    eng = engine(kv_cache_memory="1GiB", max_num_seqs=3, max_model_len=100)
    assert eng.blocks.num_blocks == 3 * 7
    assert eng.max_model_len == 100
    assert engine(max_model_len=10_000).max_model_len == 512  # capped by the model
    with pytest.raises(ValueError):
        engine(kv_cache_memory=str(per_block - 1))
