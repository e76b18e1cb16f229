"""The engine's only tensor code: a scheduled batch in, the logits of the sampled rows out."""

from __future__ import annotations

import torch
from torch import Tensor

from ..model.attention import PagedKVCache
from ..model.transformer import Transformer
from .scheduler import Batch


def kv_bytes_per_block(model: Transformer, block_size: int) -> int:
    a = model.args
    return 2 * a.n_layers * block_size * a.n_kv_heads * a.head_dim * model.dtype.itemsize


class ModelRunner:
    def __init__(self, model: Transformer, num_blocks: int, block_size: int) -> None:
        a = model.args
        self.model = model
        self.device = model.device
        self.cache = PagedKVCache(a.n_layers, num_blocks, block_size, a.n_kv_heads, a.head_dim,
                                  a.sliding_window, model.dtype, model.device)

    @torch.inference_mode()
    def run(self, batch: Batch, sample_rows: list[int]) -> Tensor:
        """Compute this step's tokens; return float32 logits (len(sample_rows), V) for the last
        token of each batch item listed in `sample_rows`."""
        tokens: list[int] = []
        positions: list[int] = []
        steps = []
        last: list[int] = []
        for seq, n in batch.items:
            start = seq.num_computed
            all_tokens = seq.tokens
            tokens.extend(all_tokens[start:start + n])
            positions.extend(range(start, start + n))
            steps.append((seq.block_table, start, n))
            last.append(len(tokens) - 1)
        self.cache.begin_step(steps)
        hidden = self.model(torch.tensor(tokens, dtype=torch.long, device=self.device),
                            torch.tensor(positions, dtype=torch.long, device=self.device), self.cache)
        rows = torch.tensor([last[i] for i in sample_rows], dtype=torch.long, device=self.device)
        return self.model.logits(hidden[rows])
