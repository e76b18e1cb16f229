"""Which sequences run in the next step, and how many of their tokens.

Each step has a token budget (`max_num_batched_tokens`). Running sequences come first, oldest
first: a decoding sequence takes 1 token, a sequence still reading its prompt takes the next chunk
that fits. Waiting sequences are then admitted in arrival order while budget, sequence slots and
free blocks allow, so a long prompt is read a chunk per step while the others keep decoding.

When a running sequence needs a block and none is free, the newest running sequence is preempted:
its blocks are freed and it goes back to the head of the queue to be recomputed later (its output
so far is kept, so the final result is unchanged).

The block manager owns every block table; the scheduler asks it for room by sequence id and
hands the runner each scheduled sequence's table in the batch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..config import EngineConfig
from .blocks import BlockManager, NoFreeBlocks
from .sequence import Sequence, Status, TokenLogprob


@dataclass(slots=True)
class Batch:
    # (sequence, number of its tokens computed in this step), in the order of the flat batch
    items: list[tuple[Sequence, int]] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    tables: list[list[int]] = field(default_factory=list)  # each item's block table, in order
    # The items scoring their prompt (engine/prompt_logprobs.py); the runner fills in, for each,
    # the positions scored in this step and their logprobs.
    scoring: list[int] = field(default_factory=list)
    prompt_logprobs: dict[int, tuple[range, list[TokenLogprob]]] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.items)

    def sample_rows(self) -> list[int]:
        """The items whose last known token is computed in this step and that may generate: they
        get a new token. (Read before `Scheduler.after_step`, which advances the computed counts.)"""
        return [i for i in self._caught_up() if self.items[i][0].num_tokens < self.items[i][0].max_len]

    def prompt_only_rows(self) -> list[int]:
        """The items that have just read their whole prompt and may generate nothing (max_tokens
        0, a prompt being scored): they end after this step."""
        return [i for i in self._caught_up() if self.items[i][0].num_tokens >= self.items[i][0].max_len]

    def _caught_up(self) -> list[int]:
        return [i for i, (seq, n) in enumerate(self.items) if seq.num_computed + n == seq.num_tokens]

    def __bool__(self) -> bool:
        return bool(self.items)


class Scheduler:
    def __init__(self, config: EngineConfig, blocks: BlockManager, sliding_window: int | None = None) -> None:
        self.config = config
        self.blocks = blocks
        self.sliding_window = sliding_window
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence, front: bool = False) -> None:
        seq.status = Status.WAITING
        (self.waiting.appendleft if front else self.waiting.append)(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> Batch:
        batch = Batch()
        budget = self._continue_running(batch, self.config.max_num_batched_tokens)
        if not batch.preempted:  # memory is short: admit nobody new this step
            self._admit_waiting(batch, budget)
        batch.tables = [self.blocks.table(seq.seq_id) for seq, _ in batch.items]
        batch.scoring = [i for i, (seq, _) in enumerate(batch.items) if seq.scoring_prompt]
        return batch

    def _continue_running(self, batch: Batch, budget: int) -> int:
        """Schedule the running sequences, oldest first; returns the budget left."""
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(seq.num_tokens - seq.num_computed, budget)
            if not self._reserve(seq, n, batch):
                break  # seq itself was preempted: it was the newest
            batch.items.append((seq, n))
            budget -= n
            i += 1
        return budget

    def _admit_waiting(self, batch: Batch, budget: int) -> None:
        """Admit waiting sequences in order while budget, seats and blocks allow."""
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            try:
                cached = self.blocks.allocate(seq.seq_id, seq.tokens, budget, use_cache=not seq.scoring_prompt)
            except NoFreeBlocks:
                break
            self.waiting.popleft()
            seq.num_computed = cached
            if seq.num_cached is None:  # a preempted sequence finds its own blocks: not a hit
                seq.num_cached = min(cached, len(seq.prompt_ids))
            seq.status = Status.RUNNING
            self.running.append(seq)
            n = min(seq.num_tokens - cached, budget)
            batch.items.append((seq, n))
            budget -= n

    def _reserve(self, seq: Sequence, n: int, batch: Batch) -> bool:
        """Blocks for seq's next n tokens, preempting newer sequences if needed."""
        while True:
            try:
                self.blocks.grow(seq.seq_id, seq.num_computed + n)
                return True
            except NoFreeBlocks:
                victim = self.running.pop()
                self._preempt(victim)
                batch.preempted.append(victim)
                if victim is seq:
                    return False

    def _preempt(self, seq: Sequence) -> None:
        self.blocks.free(seq.seq_id)
        seq.num_computed = 0
        self.num_preemptions += 1
        self.add(seq, front=True)

    def after_step(self, batch: Batch) -> None:
        """Advance computed counts, publish full blocks to the prefix cache, drop dead blocks."""
        window = self.sliding_window
        for seq, n in batch.items:
            seq.num_computed += n
            self.blocks.register_full_blocks(seq.seq_id, seq.tokens, seq.num_computed)
            if window is not None:
                self.blocks.drop_out_of_window(seq.seq_id, seq.num_computed, window)

    def finish(self, seq: Sequence) -> None:
        """Remove a finished or aborted sequence wherever it is and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free(seq.seq_id)
        seq.status = Status.FINISHED
