"""A sequence: one sample of one request, from waiting to finished. Its KV blocks are the block
manager's (engine/blocks.py), kept there by `seq_id`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .params import SamplingParams
from .stop import StopBuffer

if TYPE_CHECKING:
    from .prompt_logprobs import PromptScores


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(slots=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass(eq=False, slots=True)
class Sequence:
    seq_id: int
    request_id: str
    index: int  # which of the request's n samples
    prompt_ids: list[int]
    params: SamplingParams
    max_len: int  # prompt + the most tokens it may generate
    generator: torch.Generator | None
    stop: StopBuffer
    detok: Any  # the tokenizer's IncrementalDetokenizer
    grammar: Any = None  # a grammar_state.GrammarState when the output is constrained
    # The request's prompt logprobs, collected by its first sample only (the others share them).
    prompt_scores: PromptScores | None = None
    output_ids: list[int] = field(default_factory=list)
    num_computed: int = 0  # leading tokens whose keys/values are in the cache
    num_cached: int | None = None  # prompt tokens found in the prefix cache at first admission
    status: Status = Status.WAITING
    finish_reason: str | None = None
    first_token_time: float | None = None
    # Deltas since the engine last reported this sequence.
    new_token_ids: list[int] = field(default_factory=list)
    new_logprobs: list[TokenLogprob] = field(default_factory=list)
    new_text: str = ""

    @property
    def tokens(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def scoring_prompt(self) -> bool:
        """Whether this step's prompt positions need their logits (prompt logprobs not yet given)."""
        return self.prompt_scores is not None and not self.prompt_scores.reported

    @property
    def is_finished(self) -> bool:
        return self.status is Status.FINISHED

    def take_delta(self) -> tuple[str, list[int], list[TokenLogprob]]:
        delta = (self.new_text, self.new_token_ids, self.new_logprobs)
        self.new_text, self.new_token_ids, self.new_logprobs = "", [], []
        return delta
