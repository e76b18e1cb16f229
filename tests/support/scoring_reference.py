"""The reference for prompt scoring through the API: the demo checkpoint loaded in the test process
and run as one plain forward pass (no engine, no cache, no chunks), whose log_softmax scores each
token against the logits of the position before it. A server started with --dtype float32 must
agree with it to float rounding."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from mistral_serve.model.loader import load_folder
from mistral_serve.random_checkpoint import ensure_demo
from mistral_serve.tokenizer import Tokenizer, bundled_tokenizer_file

# The server's sums of a few dozen float32 logprobs against ours: paged attention and chunking
# reorder the arithmetic, nothing more.
TOLERANCE = 2e-3


@functools.lru_cache(maxsize=None)
def demo_model(data_dir: Path):
    return load_folder(ensure_demo(data_dir))


@functools.lru_cache(maxsize=None)
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(bundled_tokenizer_file("v3"))


def prompt_logprobs(data_dir: Path, ids: list[int]) -> torch.Tensor:
    """(len(ids) - 1, V): row i - 1 is the distribution token i was drawn against."""
    m = demo_model(data_dir)
    with torch.inference_mode():
        return torch.log_softmax(m.logits(m(torch.tensor(ids, dtype=torch.long))), dim=-1)[:-1]


def token_logprobs(data_dir: Path, ids: list[int]) -> list[float]:
    """The logprob of each token after the first, given the ones before it."""
    lp = prompt_logprobs(data_dir, ids)
    return [float(lp[i - 1, t]) for i, t in enumerate(ids) if i]


def loglikelihood(data_dir: Path, context: list[int], continuation: list[int]) -> float:
    """log P(continuation | context), the sum lm-evaluation-harness scores an answer by."""
    return sum(token_logprobs(data_dir, context + continuation)[len(context) - 1:])


def is_greedy(data_dir: Path, context: list[int], continuation: list[int]) -> bool:
    """Whether greedy decoding after `context` would write `continuation` (lm-eval's is_greedy)."""
    ids = context + continuation
    best = prompt_logprobs(data_dir, ids).argmax(-1).tolist()
    return all(best[i - 1] == ids[i] for i in range(len(context), len(ids)))
