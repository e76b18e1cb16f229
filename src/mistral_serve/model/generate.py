"""Single-sequence generation with a contiguous KV cache: the plain reference loop.

The engine (continuous batching, paged cache) is what serves requests; this loop is what tests
and tools compare it against, kept as short as possible so that it is obviously right.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from .attention import DenseKVCache
from .transformer import Transformer

# logits (V,) float32 -> next token id
Picker = Callable[[Tensor], int]


def greedy(logits: Tensor) -> int:
    return int(logits.argmax())


def new_cache(model: Transformer, batch: int, max_len: int) -> DenseKVCache:
    a = model.args
    return DenseKVCache(a.n_layers, batch, max_len, a.n_kv_heads, a.head_dim, a.sliding_window,
                        model.dtype, model.device)


@torch.inference_mode()
def step(model: Transformer, cache: DenseKVCache, new_tokens: Sequence[Sequence[int]]) -> Tensor:
    """Append each sequence's new tokens (possibly none) and return the float32 logits of every
    new token, (N, V), in the flat order of `new_tokens`."""
    cache.begin_step([len(t) for t in new_tokens])
    tokens = torch.tensor([t for seq in new_tokens for t in seq], dtype=torch.long, device=model.device)
    hidden = model(tokens, cache.positions(model.device), cache)
    cache.end_step()
    return model.logits(hidden)


def generate(model: Transformer, prompt: Sequence[int], max_new_tokens: int,
             pick: Picker = greedy, stop_ids: Sequence[int] = (),
             prefill_chunk: int | None = None) -> Iterator[int]:
    """Yield up to `max_new_tokens` ids; stops after yielding a stop id or at the context end."""
    if not prompt:
        raise ValueError("the prompt must hold at least one token")
    max_len = min(len(prompt) + max_new_tokens, model.args.max_seq_len)
    cache = new_cache(model, 1, max_len)
    chunk = prefill_chunk or len(prompt)
    for start in range(0, len(prompt), chunk):
        logits = step(model, cache, [prompt[start:start + chunk]])
    for _ in range(max_len - len(prompt)):
        token = pick(logits[-1])
        yield token
        if token in stop_ids or cache.lengths[0] + 1 > max_len:
            return
        logits = step(model, cache, [[token]])


def temperature_picker(temperature: float, seed: int | None = None) -> Picker:
    """Sample from softmax(logits / temperature); greedy at temperature 0."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return greedy
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)

    def pick(logits: Tensor) -> int:
        probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=gen))

    return pick
