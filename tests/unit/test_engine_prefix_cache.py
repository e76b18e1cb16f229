"""Prefix caching through the engine: same outputs on or off, cache hits, no leaked blocks
after finishing or aborting at any stage."""

import pytest

from support.engine_helpers import assert_no_leaks, engine, greedy, prompt, reference, run, run_one
from mistral_serve.engine.params import SamplingParams

PREFIX = prompt(100, seed=42)
SUFFIXES = [prompt(n, seed=900 + n)[1:] for n in (2, 6, 11, 17, 24, 33)]


def shared_prompts():
    return [PREFIX + s for s in SUFFIXES]


@pytest.mark.parametrize("window", [None, 8])
def test_outputs_are_identical_with_prefix_caching_on_and_off(window):
    results = {}
    for caching in (True, False):
        eng = engine(window, enable_prefix_caching=caching, max_num_batched_tokens=40)
        # Some requests arrive after the first ones have read the prefix, some together.
        ids = [eng.add_request(p, greedy(12)) for p in shared_prompts()[:2]]
        outs = {}
        for _ in range(4):
            for o in eng.step():
                outs.setdefault(o.request_id, []).append(o)
        ids += [eng.add_request(p, greedy(12)) for p in shared_prompts()[2:]]
        while eng.has_unfinished():
            for o in eng.step():
                outs.setdefault(o.request_id, []).append(o)
        tokens = [[t for o in outs[i] for d in o.deltas for t in d.token_ids] for i in ids]
        cached = [outs[i][-1].cached_tokens for i in ids]
        results[caching] = tokens, cached, eng.blocks.hits
        assert_no_leaks(eng)
    on, off = results[True], results[False]
    assert on[0] == off[0]
    for toks, p in zip(on[0], shared_prompts()):
        assert toks == reference(p, 12, window)
    assert off[1] == [0] * 6 and off[2] == 0
    assert on[2] > 0
    assert all(c >= 96 for c in on[1][2:]), on[1]  # 6 full blocks of the 100-token prefix


def test_second_request_with_the_same_prefix_reports_cached_tokens():
    eng = engine(max_num_batched_tokens=64)
    first = run_one(eng, shared_prompts()[0], greedy(5))
    assert first.outputs[-1].cached_tokens == 0
    hits = eng.blocks.hits
    assert hits == 0
    second = run_one(eng, shared_prompts()[1], greedy(5))
    assert second.outputs[-1].cached_tokens == 96
    assert all(o.cached_tokens == 96 for o in second.outputs)
    assert eng.blocks.hits == hits + 96
    assert second.tokens[0] == reference(shared_prompts()[1], 5)
    # The whole same prompt again: all but the last block-aligned token come from the cache.
    third = run_one(eng, shared_prompts()[1], greedy(5))
    assert third.outputs[-1].cached_tokens == 96
    assert third.tokens == second.tokens
    assert_no_leaks(eng)


def test_generated_tokens_are_cached_for_a_follow_up_turn():
    eng = engine()
    p = prompt(30, seed=8)
    first = run_one(eng, p, greedy(20))
    follow = p + first.tokens[0] + prompt(5, seed=9)[1:]
    c = run_one(eng, follow, greedy(4))
    assert c.outputs[-1].cached_tokens == 48  # 3 full blocks of prompt + generated text
    assert c.tokens[0] == reference(follow, 4)
    assert_no_leaks(eng)


def test_reset_prefix_cache_forgets_finished_prefixes():
    eng = engine()
    run_one(eng, shared_prompts()[0], greedy(3))
    eng.blocks.reset_prefix_cache()
    c = run_one(eng, shared_prompts()[1], greedy(3))
    assert c.outputs[-1].cached_tokens == 0
    assert c.tokens[0] == reference(shared_prompts()[1], 3)


@pytest.mark.parametrize("caching", [True, False])
def test_abort_mid_prefill_mid_decode_and_waiting_leaks_nothing(caching):
    eng = engine(enable_prefix_caching=caching, max_num_batched_tokens=16, max_num_seqs=2)
    long_a = PREFIX + SUFFIXES[3]
    long_b = prompt(90, seed=77)
    a = eng.add_request(long_a, greedy(30))
    b = eng.add_request(long_b, greedy(30))
    c = eng.add_request(prompt(20, seed=78), greedy(30))  # waits: max_num_seqs=2
    d = eng.add_request(prompt(12, seed=79), SamplingParams(n=3, temperature=1.0, seed=1, max_tokens=30))
    eng.step()
    eng.step()
    seq_a = eng.requests[a].seqs[0]
    assert 0 < seq_a.num_computed < len(long_a)  # mid-prefill
    assert eng.abort(a)
    assert not eng.abort(a)
    assert eng.abort(c)  # never admitted
    for _ in range(12):
        eng.step()
    seq_b = eng.requests[b].seqs[0]
    assert seq_b.output_ids  # decoding
    assert eng.abort(b)
    while not any(s.output_ids for s in eng.requests[d].seqs):
        eng.step()
    assert eng.abort(d)  # n=3: some samples may not even have started
    assert not eng.requests and not eng.has_unfinished()
    assert_no_leaks(eng)
    assert seq_a.finish_reason == "abort" and seq_b.finish_reason == "abort"
    assert eng.abort("unknown") is False
    # The freed (and cached) blocks serve later requests correctly.
    got = run(eng, [(long_a, greedy(8)), (long_b, greedy(8))])
    for col, p in zip(got.values(), (long_a, long_b)):
        assert col.tokens[0] == reference(p, 8)
    if caching:
        assert next(iter(got.values())).outputs[-1].cached_tokens > 0  # a's prefill was kept
    assert_no_leaks(eng)


def test_abort_of_a_request_with_held_samples_releases_everything():
    eng = engine(enable_prefix_caching=True)
    rid = eng.add_request(prompt(40, seed=3), SamplingParams(n=4, temperature=1.0, seed=2, max_tokens=10))
    eng.step()  # the first sample reads the prompt; the others start after it
    assert eng.abort(rid)
    assert_no_leaks(eng)


def test_many_requests_sharing_prefixes_finish_without_leaks_under_memory_pressure():
    per_block = 2 * 2 * 16 * 2 * 16 * 4
    eng = engine(kv_cache_memory=str(16 * per_block), max_num_batched_tokens=48)
    prompts = [PREFIX[:40] + s for s in SUFFIXES] + [PREFIX[:70] + s for s in SUFFIXES[:3]]
    got = run(eng, [(p, greedy(20)) for p in prompts])
    for col, p in zip(got.values(), prompts):
        assert col.tokens[0] == reference(p, 20)
    assert eng.scheduler.num_preemptions > 0
    assert eng.blocks.hits > 0
    assert_no_leaks(eng)


def test_cached_tokens_report_the_first_admission_even_after_preemption():
    # Unique prompts: nothing is cached when they arrive. A preempted sequence that is read again
    # finds its own earlier blocks (prompt and generated tokens) in the cache; that is internal
    # recomputation, not a prompt-cache hit, and must not show up in cached_tokens (which would
    # otherwise even exceed prompt_tokens).
    per_block = 2 * 2 * 16 * 2 * 16 * 4
    eng = engine(kv_cache_memory=str(12 * per_block), max_num_batched_tokens=64)
    prompts = [prompt(n, seed=500 + n) for n in (40, 25, 33, 18, 45, 30)]
    got = run(eng, [(p, greedy(40)) for p in prompts])
    assert eng.scheduler.num_preemptions > 0
    for col, p in zip(got.values(), prompts):
        assert col.tokens[0] == reference(p, 40)
        for out in col.outputs:
            assert out.cached_tokens <= out.prompt_tokens
            assert out.cached_tokens == 0, (len(p), out.cached_tokens)
    assert_no_leaks(eng)
