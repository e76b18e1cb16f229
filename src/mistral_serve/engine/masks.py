"""This step's token masks: grammar bitmasks and banned tokens, set to -inf before sampling.

A grammar mask depends only on the tokens a sequence has already written, so it can be computed
while the model runs: `start` before the forward, `apply` after it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import Tensor

from .grammar import apply_bitmask, new_bitmask
from .sequence import Sequence

# The bitmask (rows, ceil(V/32)) int32 and the rows it constrains this step.
Masks = tuple[Tensor, list[int]]


class TokenMasks:
    def __init__(self, vocab_size: int, device: torch.device) -> None:
        self.vocab_size = vocab_size
        # On a CPU the forward's threads already use every core: a mask thread beside them makes
        # OpenMP's threads wait on each other and slowed whole steps several-fold (measured).
        # Computed inline, the mask costs its own time only.
        self.threaded = device.type == "cuda"
        self._pool: ThreadPoolExecutor | None = None

    def start(self, seqs: list[Sequence]) -> Future[Masks] | None:
        """Begin the grammar masks of the sampled sequences (None when none is constrained)."""
        if not any(s.grammar is not None for s in seqs):
            return None
        if not self.threaded:
            done: Future[Masks] = Future()
            done.set_result(self.fill(seqs))
            return done
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="grammar-mask")
        return self._pool.submit(self.fill, seqs)

    def fill(self, seqs: list[Sequence]) -> Masks:
        """Every constrained sequence's mask for its next token. Looked up on the instance at
        each step, so a caller (the bench) may wrap it to time it."""
        bitmask = new_bitmask(len(seqs), self.vocab_size)
        rows = [i for i, s in enumerate(seqs)
                if s.grammar is not None and s.grammar.fill(bitmask, i, s.max_len - s.num_tokens)]
        return bitmask, rows

    @staticmethod
    def apply(logits: Tensor, seqs: list[Sequence], masks: Future[Masks] | None) -> Tensor:
        """logits (B, V) float32 -> a copy with refused and banned tokens at -inf (the same
        tensor when nothing is masked: the raw logits stay the model's own for logprobs)."""
        if masks is None and not any(s.params.banned_token_ids for s in seqs):
            return logits
        logits = logits.clone()
        for i, seq in enumerate(seqs):
            if seq.params.banned_token_ids:
                logits[i, seq.params.banned_token_ids] = float("-inf")
        if masks is not None:
            bitmask, rows = masks.result()
            apply_bitmask(logits, bitmask, rows)
        return logits
