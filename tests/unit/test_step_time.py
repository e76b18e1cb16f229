"""Prefill chunks sized by step time (config.target_step_ms): the scheduler with a fake cost model,
the online cost model on synthetic step times, and the option itself."""

import math
import random

import pytest

from mistral_serve.cli import build_configs, build_parser, main
from mistral_serve.config import EngineConfig
from mistral_serve.engine.blocks import BlockManager
from mistral_serve.engine.params import SamplingParams
from mistral_serve.engine.scheduler import MIN_PREFILL_TOKENS, PREFILL_STRETCH, Scheduler
from mistral_serve.engine.sequence import Sequence
from mistral_serve.engine.step_cost import OnlineStepCost, StepShape, attended_pairs, largest_chunk
from mistral_serve.engine.stop import StopBuffer

_ids = iter(range(10**6))
MS = 1e-3


class LinearCost:
    """A fake cost model: seconds = fixed + per_token * tokens + per_pair * attended."""

    def __init__(self, fixed: float = 0.0, per_token: float = 0.0, per_pair: float = 0.0, known: bool = True):
        self.fixed, self.per_token, self.per_pair, self.known = fixed, per_token, per_pair, known
        self.observed: list[tuple[StepShape, float]] = []

    def predict(self, shape: StepShape) -> float | None:
        if not self.known:
            return None
        return self.fixed + self.per_token * shape.tokens + self.per_pair * shape.attended

    def observe(self, shape: StepShape, seconds: float) -> None:
        self.observed.append((shape, seconds))


def seq(prompt_len: int, max_new: int = 100) -> Sequence:
    sid = next(_ids)
    base = 1000 + 1000 * (sid % 30)
    return Sequence(seq_id=sid, request_id=f"r{sid}", index=0, prompt_ids=[base + i for i in range(prompt_len)],
                    params=SamplingParams(), max_len=prompt_len + max_new, generator=None, stop=StopBuffer([]),
                    detok=None)


def make(cost, target_ms: float = 20.0, budget: int = 64, block_size: int = 4, blocks: int = 512, window=None):
    config = EngineConfig(max_num_batched_tokens=budget, target_step_ms=target_ms, block_size=block_size)
    return Scheduler(config, BlockManager(blocks, block_size), window, cost)


def step(sch: Scheduler):
    """schedule -> (pretend to run) -> after_step -> each caught-up sequence gets a token."""
    batch = sch.schedule()
    finish_step(sch, batch)
    return batch


def finish_step(sch: Scheduler, batch) -> None:
    """after_step, then each caught-up sequence gets a token (and ends at its length)."""
    sch.after_step(batch)
    for s, _ in batch.items:
        if s.num_computed == s.num_tokens:
            s.output_ids.append(7)
            if s.num_tokens >= s.max_len:
                sch.finish(s)


def decoding(sch: Scheduler, count: int, prompt_len: int = 8) -> list[Sequence]:
    """`count` streams that have read their prompts and decode from the next step on."""
    streams = [seq(prompt_len) for _ in range(count)]
    for s in streams:
        sch.add(s)
    while any(not s.output_ids for s in streams):
        step(sch)
    return streams


# ---- the scheduler ------------------------------------------------------------------------
def test_with_no_stream_decoding_prefill_takes_the_whole_token_budget():
    # 1 ms per token against a 10 ms target: were the target applied, a step would take 10 tokens.
    sch = make(LinearCost(per_token=1 * MS), target_ms=10, budget=64)
    a, b, c = seq(50), seq(50), seq(50)
    for s in (a, b, c):
        sch.add(s)
    batch = step(sch)
    assert [(s, n) for s, n in batch.items] == [(a, 50), (b, 14)]


def test_while_streams_decode_the_prompt_chunk_is_cut_to_the_target():
    cost = LinearCost(fixed=1 * MS, per_token=1 * MS)
    sch = make(cost, target_ms=20, budget=64, block_size=4)
    (a,) = decoding(sch, 1)
    b = seq(100)
    sch.add(b)
    batch = step(sch)
    # limit max(20 ms, 2 x 2 ms) = 20 ms: 1 + 1 decode + up to 18 prefill tokens, down to a block: 16.
    assert [(s, n) for s, n in batch.items] == [(a, 1), (b, 16)]
    assert cost.predict(batch.shape) <= 20 * MS
    # The next chunks too, and b keeps going from a block boundary.
    batch = step(sch)
    assert [(s, n) for s, n in batch.items] == [(a, 1), (b, 16)] and b.num_computed == 32


def test_the_limit_is_the_target_or_twice_the_decodes_alone():
    cost = LinearCost(fixed=10 * MS, per_token=1 * MS)
    sch = make(cost, target_ms=20, budget=512, block_size=4)
    streams = decoding(sch, 8)
    b = seq(300)
    sch.add(b)
    batch = step(sch)
    alone = cost.predict(StepShape(tokens=8))  # 18 ms: more than half the target
    limit = max(20 * MS, PREFILL_STRETCH * alone)
    assert limit == pytest.approx(36 * MS)
    prefill = dict((s, n) for s, n in batch.items)[b]
    assert all(dict(batch.items)[s] == 1 for s in streams)
    assert prefill == 16  # 36 - 18 = 18 ms of prefill at 1 ms a token, down to a block
    assert cost.predict(batch.shape) <= limit


def test_attention_work_counts_in_the_prediction():
    # Only attention costs: a chunk late in a long prompt is cut shorter than the first one.
    cost = LinearCost(per_pair=1e-6)
    sch = make(cost, target_ms=2, budget=512, block_size=4)
    decoding(sch, 1)
    b = seq(400)
    sch.add(b)
    sizes = [dict(step(sch).items)[b] for _ in range(6)]
    assert sizes[0] > sizes[-1] >= MIN_PREFILL_TOKENS
    assert sizes == sorted(sizes, reverse=True)


def test_a_prompt_always_makes_progress_even_when_no_chunk_fits():
    # A token costs a whole second: nothing fits a 20 ms target, the oldest prompt still reads
    # the minimum each step and the newer one waits its turn, so every prompt is read in the end.
    sch = make(LinearCost(per_token=1.0), target_ms=20, budget=64, block_size=4)
    decoding(sch, 2)
    b, c = seq(40, max_new=2), seq(20, max_new=2)
    sch.add(b)
    sch.add(c)
    batch = step(sch)
    assert [n for s, n in batch.items if s in (b, c)] == [MIN_PREFILL_TOKENS]
    for _ in range(20):
        step(sch)
    assert b.output_ids and c.output_ids


def test_no_target_or_no_prediction_leaves_the_token_budget_alone():
    for sch in (make(LinearCost(per_token=1 * MS), target_ms=0), make(LinearCost(known=False)),
                make(None)):
        (a,) = decoding(sch, 1)
        b = seq(100)
        sch.add(b)
        assert [(s, n) for s, n in step(sch).items] == [(a, 1), (b, 63)]


def test_every_prompt_is_read_exactly_once_under_a_time_limit():
    rng = random.Random(4)
    sch = make(LinearCost(fixed=1 * MS, per_token=0.5 * MS, per_pair=1e-6), target_ms=8, budget=48,
               block_size=4, window=24)
    seqs = [seq(rng.randrange(1, 120), max_new=rng.randrange(1, 12)) for _ in range(30)]
    computed = {s.seq_id: 0 for s in seqs}
    for i in range(3000):
        if i < len(seqs):
            sch.add(seqs[i])  # one arrival per step, so prompts keep arriving while others decode
        if not sch.has_work():
            break
        batch = sch.schedule()
        assert batch.num_tokens <= 48
        for s, n in batch.items:
            assert n >= 1 and s.num_computed + n <= s.num_tokens
            computed[s.seq_id] += n
        finish_step(sch, batch)
    assert not sch.has_work()
    assert all(computed[s.seq_id] == s.num_tokens - 1 for s in seqs)


def test_batch_shape_describes_what_the_step_computes():
    sch = make(None, budget=64, block_size=4)
    (a,) = decoding(sch, 1, prompt_len=10)
    b = seq(30)
    sch.add(b)
    batch = sch.schedule()
    assert batch.shape == StepShape(tokens=31, attended=11 + sum(range(1, 31)))


# ---- the pieces of the cost model -------------------------------------------------------------
@pytest.mark.parametrize("window", [None, 1, 5, 16])
def test_attended_pairs_counts_each_query_s_keys(window):
    for start in range(0, 40, 3):
        for n in range(0, 30, 4):
            brute = sum(min(p + 1, window or 10**9) for p in range(start, start + n))
            assert attended_pairs(start, n, window) == brute


def test_largest_chunk_is_the_largest_that_fits():
    cost = LinearCost(fixed=2 * MS, per_token=0.3 * MS, per_pair=1e-6)
    base = StepShape(tokens=5, attended=900)
    for start in (0, 17, 300):
        for most in (0, 1, 9, 64, 500):
            for limit in (1 * MS, 5 * MS, 20 * MS, 1.0):
                brute = max((n for n in range(most + 1)
                             if n == 0 or cost.predict(base.plus(start, n)) <= limit), default=0)
                assert largest_chunk(cost, base, start, most, limit) == brute


def synthetic_steps(rng: random.Random, count: int):
    """Shapes like a serving engine's: decode steps of 1-32 streams, some with a prompt chunk."""
    for _ in range(count):
        streams = rng.randrange(1, 33)
        shape = StepShape.of((rng.randrange(10, 2000), 1) for _ in range(streams))
        if rng.random() < 0.4:
            shape = shape.plus(rng.randrange(0, 1000), rng.randrange(16, 513))
        yield shape


def test_online_cost_recovers_a_linear_law():
    law = LinearCost(fixed=30 * MS, per_token=4 * MS, per_pair=2e-8)
    model = OnlineStepCost(warmup=0)
    assert model.predict(StepShape(tokens=1)) is None  # nothing seen yet
    rng = random.Random(1)
    for shape in synthetic_steps(rng, 200):
        model.observe(shape, law.predict(shape) * rng.uniform(0.97, 1.03))
    a, b, c = model.coefficients
    assert a == pytest.approx(30 * MS, rel=0.1) and b == pytest.approx(4 * MS, rel=0.05)
    for shape in synthetic_steps(rng, 20):
        assert model.predict(shape) == pytest.approx(law.predict(shape), rel=0.06)


def test_online_cost_follows_a_change_and_ignores_its_warmup():
    model = OnlineStepCost(half_life=8, warmup=1)
    model.observe(StepShape(tokens=512), 600.0)  # the first step: kernels compiling
    assert model.seen == 0
    rng = random.Random(2)
    slow, fast = LinearCost(fixed=50 * MS, per_token=8 * MS), LinearCost(fixed=10 * MS, per_token=2 * MS)
    for shape in synthetic_steps(rng, 100):
        model.observe(shape, slow.predict(shape))
    for shape in synthetic_steps(rng, 100):  # another process left the machine
        model.observe(shape, fast.predict(shape))
    probe = StepShape(tokens=300, attended=20_000)
    assert model.predict(probe) == pytest.approx(fast.predict(probe), rel=0.02)


def test_online_cost_never_predicts_less_for_more_work():
    # Step times that fall as the work grows would fit a negative term; the fit keeps every term
    # at zero or more, so a larger chunk is never predicted cheaper.
    model = OnlineStepCost(warmup=0)
    for tokens, seconds in [(1, 0.050), (8, 0.045), (32, 0.040), (64, 0.060)]:
        model.observe(StepShape(tokens=tokens, attended=tokens * 100), seconds)
    assert all(term >= 0 for term in model.coefficients)
    predictions = [model.predict(StepShape(tokens=t, attended=t * 100)) for t in range(0, 600, 25)]
    assert predictions == sorted(predictions)
    # One observation: the time is shared out over the terms, and that step is predicted back.
    single = OnlineStepCost(warmup=0)
    single.observe(StepShape(tokens=512, attended=131_328), 2.5)
    assert single.predict(StepShape(tokens=512, attended=131_328)) == pytest.approx(2.5, rel=1e-3)
    assert 0 < single.predict(StepShape(tokens=4, attended=800)) < 0.5


def test_one_very_slow_step_does_not_throw_the_model_off():
    law = LinearCost(fixed=20 * MS, per_token=2 * MS)
    model = OnlineStepCost(warmup=0)
    rng = random.Random(3)
    for shape in synthetic_steps(rng, 50):
        model.observe(shape, law.predict(shape))
    model.observe(StepShape(tokens=32, attended=9000), 90.0)  # 90 s: a compile in the middle of a step
    probe = StepShape(tokens=256, attended=40_000)
    assert model.predict(probe) < 1.5 * law.predict(probe)
    # A real slowdown (three times slower from now on) comes through, as fast as the half-life
    # (32 steps) lets it: the clamp does not hold it back.
    for shape in synthetic_steps(rng, 100):
        model.observe(shape, 3 * law.predict(shape))
    assert model.predict(probe) == pytest.approx(3 * law.predict(probe), rel=0.1)


def test_online_cost_skips_nonsense_times():
    model = OnlineStepCost(warmup=0)
    model.observe(StepShape(tokens=4), math.nan)
    model.observe(StepShape(tokens=4), -1.0)
    assert model.seen == 0
    with pytest.raises(ValueError):
        OnlineStepCost(half_life=0)


# ---- the option -----------------------------------------------------------------------------
def test_target_step_ms_is_an_option_with_its_default():
    default = build_configs(build_parser().parse_args(["serve"])).engine
    assert default.target_step_ms == EngineConfig().target_step_ms > 0
    ns = build_parser().parse_args(["serve", "--target-step-ms", "250.5"])
    assert build_configs(ns).engine.target_step_ms == 250.5
    assert build_configs(build_parser().parse_args(["serve", "--target-step-ms", "0"])).engine.target_step_ms == 0


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_target_step_ms_rejects_nonsense(value):
    with pytest.raises(ValueError, match="target_step_ms"):
        EngineConfig(target_step_ms=value)


def test_a_negative_target_on_the_command_line_is_a_one_line_error(capsys):
    assert main(["serve", "--target-step-ms", "-5"]) == 2
    err = capsys.readouterr().err
    assert "target_step_ms must be" in err and "-5" in err and "Traceback" not in err


# ---- the loop: scheduler + learned cost model on a simulated machine ---------------------------
def simulate(target_ms: float, clients: int = 24, prompt_len: int = 150, max_new: int = 24, seed: int = 0):
    """The scheduler and OnlineStepCost against a simulated CPU shaped like the 1B model's: a step
    takes 0.2 s + 5 ms a token, +-30% noise, the first one 20 s more (kernels compiling). All the
    clients arrive at once. Returns (TTFTs, gaps between a stream's tokens), in seconds."""
    rng = random.Random(seed)
    cost = OnlineStepCost()
    sch = Scheduler(EngineConfig(max_num_batched_tokens=512, target_step_ms=target_ms), BlockManager(4096, 16),
                    None, cost)
    streams = [seq(prompt_len, max_new) for _ in range(clients)]
    for s in streams:
        sch.add(s)
    now, last, ttfts, gaps = 0.0, {}, [], []
    while sch.has_work():
        batch = sch.schedule()
        seconds = (0.2 + 0.005 * batch.shape.tokens) * rng.uniform(0.7, 1.3) + (20.0 if now == 0 else 0.0)
        now += seconds
        sch.after_step(batch)
        for s, _ in batch.items:
            if s.num_computed == s.num_tokens:
                s.output_ids.append(7)
                (gaps.append(now - last[s]) if s in last else ttfts.append(now))
                last[s] = now
                if s.num_tokens >= s.max_len:
                    sch.finish(s)
        cost.observe(batch.shape, seconds)
    return sorted(ttfts), sorted(gaps)


def pct(values, q):
    return values[min(len(values) - 1, int(q * len(values)))]


def test_on_a_simulated_cpu_the_target_keeps_the_token_gaps_within_3x():
    ttfts_on, gaps_on = simulate(100)
    ttfts_off, gaps_off = simulate(0)
    assert pct(gaps_off, 0.99) > 5 * pct(gaps_off, 0.5)  # 512-token chunks stall every stream
    assert pct(gaps_on, 0.99) <= 3 * pct(gaps_on, 0.5)
    # The price: prompts read more slowly while streams decode, within a bound.
    assert len(ttfts_on) == len(ttfts_off) == 24
    assert pct(ttfts_on, 0.99) < 2 * pct(ttfts_off, 0.99)
