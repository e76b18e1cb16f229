"""The plain reference for the engine: one sequence, a contiguous KV cache, greedy decoding.

Kept as short as possible so that it is obviously right; the engine's batched, paged and
chunked paths are checked against it.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from mistral_serve.model.attention import sdpa
from mistral_serve.model.transformer import Transformer


class DenseKVCache:
    """A contiguous cache for a fixed batch of sequences: k/v (layers, B, max_len, KV, D).

    Call `begin_step(new_lens)` before each forward with how many tokens each sequence adds
    (0 to skip one); sequence b's tokens go to positions length[b] .. length[b] + new_lens[b].
    """

    def __init__(self, n_layers: int, batch: int, max_len: int, n_kv_heads: int, head_dim: int,
                 window: int | None, dtype: torch.dtype, device: torch.device) -> None:
        shape = (n_layers, batch, max_len, n_kv_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.lengths = [0] * batch
        self.window = window
        self.max_len = max_len
        self._step: list[int] = [0] * batch

    def begin_step(self, new_lens: Sequence[int]) -> None:
        if len(new_lens) != len(self.lengths):
            raise ValueError(f"expected {len(self.lengths)} lengths, got {len(new_lens)}")
        for b, n in enumerate(new_lens):
            if self.lengths[b] + n > self.max_len:
                raise ValueError(f"sequence {b} would hold {self.lengths[b] + n} tokens, "
                                 f"cache holds {self.max_len}")
        self._step = list(new_lens)

    def end_step(self) -> None:
        self.lengths = [n + m for n, m in zip(self.lengths, self._step)]
        self._step = [0] * len(self.lengths)

    def positions(self, device: torch.device | None = None) -> Tensor:
        """(N,) absolute positions of this step's tokens."""
        return torch.cat([torch.arange(s, s + n) for s, n in zip(self.lengths, self._step)]).to(device)

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        outs = []
        offset = 0
        for b, n in enumerate(self._step):
            if n == 0:
                continue
            start = self.lengths[b]
            end = start + n
            self.k[layer, b, start:end] = k[offset:offset + n]
            self.v[layer, b, start:end] = v[offset:offset + n]
            # Keys older than the window can never be seen by this step's queries.
            k_start = 0 if self.window is None else max(0, start - self.window + 1)
            outs.append(sdpa(q[offset:offset + n], self.k[layer, b, k_start:end],
                             self.v[layer, b, k_start:end], start, k_start, self.window))
            offset += n
        return torch.cat(outs) if len(outs) > 1 else outs[0]


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
