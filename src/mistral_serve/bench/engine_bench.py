"""Engine benchmark: aggregate decode throughput against concurrency, and prefix-cache TTFT.

Everything runs in-process on LLMEngine (no HTTP), with random prompts on the given weights.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from ..engine.engine import LLMEngine
from ..engine.params import GuidedDecoding, SamplingParams


@dataclass(frozen=True, slots=True)
class ThroughputResult:
    concurrency: int
    output_tokens: int
    seconds: float  # whole run: prefill and decode
    decode_seconds: float  # from the last first token to the end: every sequence decoding

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds

    @property
    def decode_tokens_per_s(self) -> float:
        tokens_in_decode = self.output_tokens - self.concurrency
        return tokens_in_decode / self.decode_seconds if self.decode_seconds > 0 else float("nan")


@dataclass(frozen=True, slots=True)
class PrefixResult:
    prefix_tokens: int
    cold_ttft: float
    cached_ttft: float
    cached_tokens: int


def random_prompt(rng: random.Random, length: int, vocab: int) -> list[int]:
    # Skip the control tokens at the start of the vocabulary (ids below 1000 in v1/v3).
    return [1] + [rng.randrange(1000, vocab) for _ in range(length - 1)]


def run_until_done(engine: LLMEngine) -> dict[str, float]:
    """Step until idle; returns each request's time to first token (seconds since start)."""
    start = time.perf_counter()
    first: dict[str, float] = {}
    while engine.has_unfinished():
        for out in engine.step():
            if out.request_id not in first and any(d.token_ids for d in out.deltas):
                first[out.request_id] = time.perf_counter() - start
    return first


def throughput(engine: LLMEngine, concurrency: int, prompt_len: int, output_len: int,
               seed: int = 0) -> ThroughputResult:
    rng = random.Random(seed)
    vocab = engine.model.args.vocab_size
    params = SamplingParams(temperature=0.0, max_tokens=output_len, ignore_eos=True)
    start = time.perf_counter()
    for _ in range(concurrency):
        engine.add_request(random_prompt(rng, prompt_len, vocab), params)
    first = run_until_done(engine)
    seconds = time.perf_counter() - start
    decode_seconds = seconds - max(first.values())
    return ThroughputResult(concurrency, concurrency * output_len, seconds, decode_seconds)


def prefill_rate(engine: LLMEngine, prompt_len: int, seed: int = 2) -> float:
    """Prompt tokens per second for one fresh prompt (its time to the first token)."""
    rng = random.Random(seed)
    params = SamplingParams(temperature=0.0, max_tokens=1, ignore_eos=True)
    started = time.perf_counter()
    engine.add_request(random_prompt(rng, prompt_len, engine.model.args.vocab_size), params)
    run_until_done(engine)
    return prompt_len / (time.perf_counter() - started)


def prefix_ttft(engine: LLMEngine, prefix_len: int, seed: int = 1) -> PrefixResult:
    """TTFT of a request with a long shared prefix, first cold then with the prefix cached."""
    rng = random.Random(seed)
    vocab = engine.model.args.vocab_size
    prefix = random_prompt(rng, prefix_len, vocab)
    params = SamplingParams(temperature=0.0, max_tokens=1, ignore_eos=True)
    times = []
    cached = 0
    for _ in range(2):
        suffix = [rng.randrange(1000, vocab) for _ in range(16)]
        started = time.perf_counter()
        engine.add_request(prefix + suffix, params)
        while engine.has_unfinished():
            for out in engine.step():
                cached = out.cached_tokens
        times.append(time.perf_counter() - started)
    return PrefixResult(prefix_len, times[0], times[1], cached)


@dataclass(frozen=True, slots=True)
class GrammarResult:
    concurrency: int
    plain_tokens_per_s: float
    constrained_tokens_per_s: float
    compile_seconds: float  # the schema's first compile (later requests hit the cache)
    mask_ms_per_token: float  # computing one sequence's mask (in a thread, beside the forward)


class MaskTimer:
    """Times the engine's grammar masks within a `with` block: it wraps `engine.masks.fill`
    (the call that computes a step's masks, on the mask thread on a GPU) and puts it back after.

        with MaskTimer(engine) as masks:
            ...  # steps
        masks.seconds / masks.rows  # seconds per masked row
    """

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self.seconds = 0.0  # spent computing masks
        self.rows = 0  # sequence-steps constrained by them (one masked token each)

    def __enter__(self) -> "MaskTimer":
        self._fill = fill = self.engine.masks.fill

        def timed(seqs):
            start = time.perf_counter()
            bitmask, rows = fill(seqs)
            self.seconds += time.perf_counter() - start
            self.rows += len(rows)
            return bitmask, rows

        self.engine.masks.fill = timed
        return self

    def __exit__(self, *exc) -> None:
        self.engine.masks.fill = self._fill


# A schema with a free string, so random weights keep writing until the budget closes it.
BENCH_SCHEMA = ('{"type": "object", "properties": {"title": {"type": "string"}, "year": {"type": "integer", '
                '"minimum": 1900, "maximum": 2100}, "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}}}, '
                '"required": ["title", "year", "tags"]}')


def grammar_overhead(engine: LLMEngine, concurrency: int, prompt_len: int, output_len: int,
                     seed: int = 0) -> GrammarResult:
    """Output tokens/s with and without a JSON schema on every request, and the mask's cost."""
    rng = random.Random(seed)
    vocab = engine.model.args.vocab_size
    spec = GuidedDecoding("json_schema", BENCH_SCHEMA)
    started = time.perf_counter()
    engine.grammars.compile(spec)
    compile_seconds = time.perf_counter() - started
    rates = []
    with MaskTimer(engine) as masks:
        for guided in (None, spec):
            params = SamplingParams(temperature=1.0, max_tokens=output_len, guided=guided,
                                    ignore_eos=guided is None)
            start = time.perf_counter()
            ids = [engine.add_request(random_prompt(rng, prompt_len, vocab), params) for _ in range(concurrency)]
            tokens = 0
            while engine.has_unfinished():
                for out in engine.step():
                    tokens += sum(len(d.token_ids) for d in out.deltas if out.request_id in ids)
            rates.append(tokens / (time.perf_counter() - start))
    per_token = masks.seconds / max(1, masks.rows)  # only the constrained pass computes masks
    return GrammarResult(concurrency, rates[0], rates[1], compile_seconds, per_token * 1000)
