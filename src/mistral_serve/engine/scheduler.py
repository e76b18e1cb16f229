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

Step time (`target_step_ms`, with a cost model from engine/step_cost.py). A decoding stream waits
one whole step per token, so while any stream decodes, prefill chunks are also cut so that the
step's predicted time stays within the limit

    limit = max(target_step_ms, PREFILL_STRETCH * the predicted time of the decodes alone)

The second term is for machines where decoding alone already takes about the target or more
(a CPU with 32 streams): there a prefill may at most double the step, so the gap between tokens
stays within about twice its usual value while prompts still get half of the machine. With no
stream decoding, prefill takes the whole token budget (time to first token, throughput). The
oldest prompt always reads at least MIN_PREFILL_TOKENS per step, so no prompt starves, and a chunk
cut by time ends on a block boundary. Until the cost model has timed a step it predicts nothing
and the token budget alone applies. Outputs do not depend on the chunking (tested), only
latencies do.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..config import EngineConfig
from .blocks import BlockManager, NoFreeBlocks
from .sequence import Sequence, Status, TokenLogprob
from .step_cost import StepCost, StepShape, largest_chunk

# A step with prefill may take this many times the decodes' own time (see the module docstring).
PREFILL_STRETCH = 2.0
# Prompt positions read per step at least, whatever the time target (one default block).
MIN_PREFILL_TOKENS = 16


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
    shape: StepShape = StepShape()  # what the step computes, for the cost model (step_cost.py)

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


@dataclass(slots=True)
class _Plan:
    """What is left of the step being scheduled."""

    tokens: int  # of the token budget
    limit: float | None  # seconds the step may take; None: no time limit (no stream decodes)
    shape: StepShape  # the decodes (counted up front) and the other items given so far
    prefilled: int = 0  # prompt positions given so far


class Scheduler:
    def __init__(self, config: EngineConfig, blocks: BlockManager, sliding_window: int | None = None,
                 cost: StepCost | None = None) -> None:
        self.config = config
        self.blocks = blocks
        self.sliding_window = sliding_window
        self.cost = cost  # None: prefill is bounded by the token budget alone
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
        plan = self._plan()
        self._continue_running(batch, plan)
        if not batch.preempted:  # memory is short: admit nobody new this step
            self._admit_waiting(batch, plan)
        batch.tables = [self.blocks.table(seq.seq_id) for seq, _ in batch.items]
        batch.scoring = [i for i, (seq, _) in enumerate(batch.items) if seq.scoring_prompt]
        batch.shape = StepShape.of(((seq.num_computed, n) for seq, n in batch.items), self.sliding_window)
        return batch

    @staticmethod
    def _decoding(seq: Sequence) -> bool:
        """A stream waiting for its next token (not a prompt being read, nor one being recomputed)."""
        return bool(seq.output_ids) and seq.num_tokens - seq.num_computed == 1

    def _plan(self) -> _Plan:
        """The step's token budget and, while streams decode and a target is set, its time limit."""
        decodes = StepShape.of(((s.num_computed, 1) for s in self.running if self._decoding(s)),
                               self.sliding_window)
        budget = self.config.max_num_batched_tokens
        target = self.config.target_step_ms / 1000
        if self.cost is None or target <= 0 or not decodes.tokens:
            return _Plan(budget, None, decodes)
        alone = self.cost.predict(decodes)
        limit = None if alone is None else max(target, PREFILL_STRETCH * alone)
        return _Plan(budget, limit, decodes)

    def _chunk(self, plan: _Plan, seq: Sequence, start: int) -> int:
        """How many of seq's tokens from `start` to compute in this step (0: none fit)."""
        left = seq.num_tokens - start
        n = min(left, plan.tokens)
        if plan.limit is None or self._decoding(seq) or n <= 0:
            return n
        least = min(n, max(0, MIN_PREFILL_TOKENS - plan.prefilled))
        m = max(least, largest_chunk(self.cost, plan.shape, start, n, plan.limit, self.sliding_window))
        if m < n:  # cut by time: end on a block boundary if that still makes the progress due
            bs = self.blocks.block_size
            aligned = (start + m) // bs * bs - start
            if aligned >= max(least, 1):
                m = aligned
        return m

    def _take(self, plan: _Plan, batch: Batch, seq: Sequence, start: int, n: int) -> None:
        batch.items.append((seq, n))
        plan.tokens -= n
        if not self._decoding(seq):  # the decodes are in plan.shape from the start
            plan.shape = plan.shape.plus(start, n, self.sliding_window)
            plan.prefilled += n

    def _continue_running(self, batch: Batch, plan: _Plan) -> None:
        """Schedule the running sequences, oldest first."""
        i = 0
        while i < len(self.running) and plan.tokens > 0:
            seq = self.running[i]
            n = self._chunk(plan, seq, seq.num_computed)
            if n == 0:  # a prompt whose chunk does not fit the time left; later decodes still do
                i += 1
                continue
            if not self._reserve(seq, n, batch):
                break  # seq itself was preempted: it was the newest
            self._take(plan, batch, seq, seq.num_computed, n)
            i += 1

    def _admit_waiting(self, batch: Batch, plan: _Plan) -> None:
        """Admit waiting sequences in order while budget, time, seats and blocks allow."""
        while self.waiting and plan.tokens > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            if self._chunk(plan, seq, 0) == 0:  # not even a chunk from the start fits
                break
            try:
                # Blocks for as much of the prompt as the token budget allows, as without a time
                # limit: the chunks after this one fill them.
                cached = self.blocks.allocate(seq.seq_id, seq.tokens, plan.tokens,
                                              use_cache=not seq.scoring_prompt)
            except NoFreeBlocks:
                break
            self.waiting.popleft()
            seq.num_computed = cached
            if seq.num_cached is None:  # a preempted sequence finds its own blocks: not a hit
                seq.num_cached = min(cached, len(seq.prompt_ids))
            seq.status = Status.RUNNING
            self.running.append(seq)
            n = self._chunk(plan, seq, cached)
            if n == 0:  # its cached prefix makes even the first chunk too long: next step
                break
            self._take(plan, batch, seq, cached, n)

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
