"""The engine with a step-time target: the same outputs as without one, and every sampled step
timed into the cost model."""

import pytest

from support.engine_helpers import assert_no_leaks, greedy, model, prompt, run, tokenizer
from mistral_serve.config import EngineConfig
from mistral_serve.engine.engine import LLMEngine
from mistral_serve.engine.params import SamplingParams
from mistral_serve.engine.scheduler import MIN_PREFILL_TOKENS
from mistral_serve.engine.step_cost import OnlineStepCost, StepShape

LENGTHS = [90, 3, 150, 17, 64, 5, 99, 31, 16, 120, 4, 47]


class LinearCost:
    """Predicts 1 ms a token and records what the engine observes."""

    def __init__(self) -> None:
        self.observed: list[tuple[StepShape, float]] = []

    def predict(self, shape: StepShape) -> float:
        return shape.tokens * 1e-3

    def observe(self, shape: StepShape, seconds: float) -> None:
        self.observed.append((shape, seconds))


def make_engine(window, target_ms: float, cost=None) -> LLMEngine:
    config = EngineConfig(kv_cache_memory="64MB", max_num_batched_tokens=48, block_size=16, target_step_ms=target_ms)
    return LLMEngine(model(window), tokenizer(), config, step_cost=cost)


def spy_batches(eng):
    seen = []
    run_batch = eng.runner.run

    def wrapped(batch, rows):
        seen.append([(s.num_computed, n, bool(s.output_ids)) for s, n in batch.items])
        return run_batch(batch, rows)

    eng.runner.run = wrapped
    return seen


def requests():
    out = []
    for i, n in enumerate(LENGTHS):
        p = prompt(n, seed=300 + i)
        if i % 3 == 2:  # sampled with a seed: must not depend on the batch either
            params = SamplingParams(temperature=0.9, top_p=0.9, seed=i, max_tokens=9, ignore_eos=True, logprobs=True)
        else:
            params = greedy(6 + i % 5)
        out.append((p, params))
    return out


@pytest.mark.parametrize("window", [None, 8])
def test_outputs_with_the_time_target_equal_those_without(window):
    # 1 ms a token against a 10 ms target: prompt chunks next to decodes are cut to a few tokens.
    eng = make_engine(window, target_ms=10, cost=LinearCost())
    seen = spy_batches(eng)
    timed = run(eng, requests())
    plain = run(make_engine(window, target_ms=0), requests())
    for (p, params), got, want in zip(requests(), timed.values(), plain.values()):
        assert got.tokens == want.tokens
        # float32 matmuls round differently with the number of rows in the batch: the same to
        # about 1e-6, as between any two batchings.
        assert [lp.token_id for lp in got.logprobs.get(0, [])] == [lp.token_id for lp in want.logprobs.get(0, [])]
        assert [lp.logprob for lp in got.logprobs.get(0, [])] == \
            pytest.approx([lp.logprob for lp in want.logprobs.get(0, [])], abs=1e-4)
    # The target really cut chunks: steps with a stream decoding computed at most the minimum
    # prefill (nothing else fits 10 ms), while a step with none decoding took the whole budget.
    mixed = [items for items in seen if any(decode and n == 1 for _, n, decode in items)]
    assert mixed and all(sum(n for _, n, decode in items if not decode) <= MIN_PREFILL_TOKENS for items in mixed)
    assert any(sum(n for _, n, _ in items) == 48 for items in seen)
    assert_no_leaks(eng)


def test_outputs_with_the_learned_cost_model_equal_those_without():
    # A target far under what a step takes here: the learned model cuts chunks to the minimum.
    eng = make_engine(None, target_ms=0.001)
    seen = spy_batches(eng)
    got = run(eng, requests())
    plain = run(make_engine(None, target_ms=0), requests())
    assert [c.tokens for c in got.values()] == [c.tokens for c in plain.values()]
    assert isinstance(eng.step_cost, OnlineStepCost) and eng.step_cost.seen > 0
    assert any(0 < sum(n for _, n, decode in items if not decode) <= MIN_PREFILL_TOKENS for items in seen)
    assert_no_leaks(eng)


def test_every_step_that_samples_is_timed_into_the_cost_model():
    cost = LinearCost()
    eng = make_engine(None, target_ms=10, cost=cost)
    shapes = []
    schedule = eng.scheduler.schedule

    def spy():
        batch = schedule()
        if batch.sample_rows():
            shapes.append(batch.shape)
        return batch

    eng.scheduler.schedule = spy
    run(eng, [(prompt(n, seed=n), greedy(4)) for n in (70, 20, 5)])
    assert [shape for shape, _ in cost.observed] == shapes
    assert all(0 < seconds < 60 for _, seconds in cost.observed)
