"""Shared fixtures for the engine tests: a tiny random Mistral, the v3 tokenizer, run helpers."""

from __future__ import annotations

import functools
import random

from mistral_serve.config import EngineConfig
from mistral_serve.engine.engine import LLMEngine
from mistral_serve.engine.params import SamplingParams
from mistral_serve.model.args import ModelArgs
from support.reference_decode import generate
from mistral_serve.model.transformer import Transformer
from mistral_serve.model.writer import random_parameters

ARGS = ModelArgs(dim=64, n_layers=2, head_dim=16, hidden_dim=128, n_heads=4, n_kv_heads=2,
                 vocab_size=32768, max_seq_len=512)
EOS = 2
# Ordinary (non-control) pieces of the v3 vocabulary, to build prompts from.
FIRST_PLAIN, LAST_PLAIN = 1000, 32000


@functools.lru_cache(maxsize=None)
def tokenizer():
    from mistral_serve.tokenizer import Tokenizer, bundled_tokenizer_file
    return Tokenizer.from_file(bundled_tokenizer_file("v3"))


@functools.lru_cache(maxsize=None)
def model(window: int | None = None, seed: int = 0, max_seq_len: int = 512) -> Transformer:
    args = ARGS.replace(sliding_window=window, max_seq_len=max_seq_len)
    m = Transformer(args)
    params = dict(random_parameters(args, seed))
    # random_parameters' small weights make attention almost a no-op: the next token then depends
    # on the last one only, and a broken cache, window or prefix would go unnoticed. Sharper
    # attention and larger logits make every earlier token count and keep greedy choices clear.
    for name, tensor in params.items():
        if name.endswith("attention.wqkv.weight"):
            tensor.mul_(3.0)
        elif name.endswith("attention.wo.weight") or name == "output.weight":
            tensor.mul_(10.0)
    m.load_state_dict(params, strict=False)
    m.eval()
    return m


def prompt(length: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [1] + [rng.randrange(FIRST_PLAIN, LAST_PLAIN) for _ in range(length - 1)]


@functools.lru_cache(maxsize=None)
def _reference(window: int | None, prompt_ids: tuple[int, ...], n: int) -> tuple[int, ...]:
    return tuple(generate(model(window), list(prompt_ids), n))


def reference(prompt_ids: list[int], n: int, window: int | None = None) -> list[int]:
    """Greedy tokens from the plain single-sequence loop with a dense cache."""
    return list(_reference(window, tuple(prompt_ids), n))


def engine(window: int | None = None, **config) -> LLMEngine:
    config.setdefault("kv_cache_memory", "64MB")
    config.setdefault("max_num_batched_tokens", 64)
    config.setdefault("block_size", 16)
    return LLMEngine(model(window), tokenizer(), EngineConfig(**config))


def greedy(max_tokens: int, **kw) -> SamplingParams:
    kw.setdefault("ignore_eos", True)
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, **kw)


class Collected:
    """Everything one request streamed, per sample index."""

    def __init__(self) -> None:
        self.tokens: dict[int, list[int]] = {}
        self.texts: dict[int, list[str]] = {}
        self.logprobs: dict[int, list] = {}
        self.finish: dict[int, str | None] = {}
        self.outputs = []
        self.finished = False

    def add(self, out) -> None:
        self.outputs.append(out)
        assert not self.finished, "output after the request finished"
        for d in out.deltas:
            assert self.finish.get(d.index) is None, f"delta for sample {d.index} after it finished"
            self.tokens.setdefault(d.index, []).extend(d.token_ids)
            self.texts.setdefault(d.index, []).append(d.text)
            self.logprobs.setdefault(d.index, []).extend(d.logprobs)
            self.finish[d.index] = d.finish_reason
        self.finished = out.finished

    def text(self, index: int = 0) -> str:
        return "".join(self.texts.get(index, []))


def run(eng: LLMEngine, requests, max_steps: int = 10_000, on_step=None) -> dict[str, Collected]:
    """Add (prompt, params) pairs, step until done; returns request id -> Collected, in order."""
    ids = [eng.add_request(list(p), params) for p, params in requests]
    got = {rid: Collected() for rid in ids}
    for i in range(max_steps):
        if not eng.has_unfinished():
            break
        for out in eng.step():
            got[out.request_id].add(out)
        if on_step is not None:
            on_step(eng, i)
    else:
        raise AssertionError("the engine did not finish in time")
    return got


def run_one(eng: LLMEngine, prompt_ids, params) -> Collected:
    return next(iter(run(eng, [(prompt_ids, params)]).values()))


def assert_no_leaks(eng: LLMEngine) -> None:
    assert not eng.requests
    assert not eng.scheduler.running and not eng.scheduler.waiting
    assert all(c == 0 for c in eng.blocks.ref_counts), eng.blocks.ref_counts
    assert eng.blocks.num_free == eng.blocks.num_blocks
