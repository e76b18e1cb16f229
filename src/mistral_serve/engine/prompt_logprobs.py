"""Prompt logprobs: how likely the model found each token of the prompt, as evaluation harnesses
score a text (lm-evaluation-harness's multiple-choice tasks sum them over an answer).

The logprob of prompt token t_i is log_softmax(logits at position i-1)[t_i], on the model's raw
logits (no temperature, penalty or mask: those shape sampling, not the model's judgement), as
vLLM reports prompt logprobs. Token 0 has none (nothing precedes it).

Worked example, prompt [a b c d] read in chunks of 2 tokens:
  chunk 1 computes positions 0, 1: logits 0 score b, logits 1 score c;
  chunk 2 computes positions 2, 3: logits 2 score d; logits 3 predict the first new token,
  which is sampling's business, not the prompt's.
So a chunk starting at `start` with `n` tokens scores positions start .. min(start+n, len-1) - 1,
each against the next prompt token, and no chunk needs anything from another.

A sequence scoring its prompt computes every position, so it never takes its prefix from the
prefix cache (the cached positions would have no logits); it may still leave its blocks there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .sequence import TokenLogprob


@dataclass(slots=True)
class PromptScores:
    """One request's prompt logprobs, filled chunk by chunk as its first sample reads the prompt."""

    prompt_ids: list[int]
    top: int  # how many most likely alternatives to keep per position
    # One entry per prompt token; entry 0 stays None. Filled by position, so a prompt read again
    # after a preemption overwrites what it had rather than appending twice.
    entries: list[TokenLogprob | None] = field(init=False)
    reported: bool = False  # handed to the client (a later recompute then needs none)

    def __post_init__(self) -> None:
        self.entries = [None] * len(self.prompt_ids)

    def scored_positions(self, start: int, n: int) -> range:
        """The positions of a chunk (start, n tokens) whose logits score a prompt token."""
        return range(start, max(start, min(start + n, len(self.prompt_ids) - 1)))

    def targets(self, positions: range) -> list[int]:
        """The token each position's logits score: the next prompt token."""
        return self.prompt_ids[positions.start + 1:positions.stop + 1]

    def fill(self, positions: range, scored: list[TokenLogprob]) -> None:
        self.entries[positions.start + 1:positions.stop + 1] = scored


def score_rows(logits: Tensor, targets: Tensor, top: int) -> list[TokenLogprob]:
    """logits (M, V) float32 raw model logits, targets (M,) the token each row scores, top the
    number of alternatives -> one TokenLogprob per row (the target's logprob, the `top` most
    likely tokens best first)."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)  # (M, V)
    values = logprobs.gather(1, targets[:, None])[:, 0].tolist()  # (M,)
    if top:
        top_values, top_ids = torch.topk(logprobs, top, dim=-1)  # (M, top) each
        tops = [list(zip(ids, vals)) for ids, vals in zip(top_ids.tolist(), top_values.tolist())]
    else:
        tops = [[] for _ in values]
    return [TokenLogprob(t, v, alt) for t, v, alt in zip(targets.tolist(), values, tops)]
