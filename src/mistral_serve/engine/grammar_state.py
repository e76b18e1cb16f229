"""One sequence's position in its grammar (engine/grammar.py compiles the grammar), with the two
things xgrammar leaves to the server:
  * a trigger: tool calls are free text until the model writes `[TOOL_CALLS]`, then the calls'
    schema applies; `tool_choice: required` forces the trigger as the first token;
  * a budget: as the answer nears its token limit, the state plans the shortest way to finish
    the grammar (closing strings, brackets, required fields) and forces it, so the output still
    parses when `max_tokens` would otherwise cut it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import xgrammar as xgr
from torch import Tensor

if TYPE_CHECKING:
    from .grammar import GrammarCompiler
    from .params import GuidedDecoding

# Tokens of slack kept when planning the ending, on top of the ending itself.
ENDING_MARGIN = 4
# The order in which the ending planner tries single characters: one of each kind first (close a
# string, a digit, a letter, close a bracket, separators), then the rest of ASCII punctuation,
# the other digits and letters, and whitespace last.
_LEADING = b'"0aA}],:{[-._'
ENDING_ORDER = (_LEADING + bytes(b for b in range(33, 127) if b not in _LEADING and not chr(b).isalnum())
                + bytes(b for b in range(33, 127) if b not in _LEADING and chr(b).isalnum()) + b" \n")
# Characters tried per step before the planner accepts one that leaves the grammar where it was.
_MAX_TRIES = 40

log = logging.getLogger(__name__)


def set_only(bitmask_row: Tensor, token_id: int) -> None:
    """Make `token_id` the only token a bitmask row (int32, 32 tokens a word) allows."""
    bitmask_row.zero_()
    bit = token_id % 32
    bitmask_row[token_id // 32] = (1 << bit) - (1 << 32 if bit == 31 else 0)


def allowed(bitmask_row: Tensor, token_id: int) -> bool:
    return bool((int(bitmask_row[token_id // 32]) >> (token_id % 32)) & 1)


class GrammarState:
    """One sequence's position in its grammar."""

    def __init__(self, compiler: GrammarCompiler, compiled: xgr.CompiledGrammar, spec: GuidedDecoding) -> None:
        self.compiler = compiler
        self.matcher = xgr.GrammarMatcher(compiled)
        self.trigger = spec.trigger_token
        # Before its trigger a grammar does not apply (tool calls under tool_choice "auto").
        self.active = self.trigger is None
        # Tokens the sequence must write next, in order: the trigger under tool_choice
        # "required", or the planned ending once the budget runs short.
        self.forced: list[int] = [self.trigger] if spec.trigger_required and self.trigger is not None else []
        self.next_check: int | None = None  # remaining budget at which to plan the ending again
        self.broken = False  # the model's token was refused (cannot happen unless masks were skipped)

    @property
    def finished(self) -> bool:
        return self.matcher.is_terminated()

    def fill(self, bitmask: Tensor, index: int, remaining: int) -> bool:
        """Write this step's mask into bitmask[index]; `remaining`: tokens the sequence may still
        generate. Returns False when nothing is constrained this step (row left all-allowed).
        A failure inside the grammar engine frees this sequence rather than failing the step
        for every sequence in the batch."""
        if self.broken:
            return False
        try:
            return self._fill(bitmask, index, remaining)
        except Exception:
            log.exception("grammar mask failed; the sequence continues unconstrained")
            self.broken = True
            bitmask[index].fill_(-1)
            return False

    def _fill(self, bitmask: Tensor, index: int, remaining: int) -> bool:
        if not self.forced and self.active:
            self._watch_budget(bitmask, index, remaining)
        if self.forced:
            set_only(bitmask[index], self.forced[0])
            return True
        if not self.active:
            return False
        self.matcher.fill_next_token_bitmask(bitmask, index)
        return True

    def accept(self, token_id: int) -> None:
        if self.forced and self.forced[0] == token_id:
            self.forced.pop(0)
        if not self.active:
            self.active = token_id == self.trigger
            return
        if not self.broken and not self.matcher.is_terminated() and not self.matcher.accept_token(token_id):
            self.broken = True

    # ---- the budget ---------------------------------------------------------------------------
    def _watch_budget(self, scratch: Tensor, index: int, remaining: int) -> None:
        """Plan the ending when the budget left is close to what the ending needs."""
        if self.next_check is not None and remaining > self.next_check:
            return
        chars = self.plan_ending(scratch, index, limit=min(8 * remaining, 4096))
        if chars is None:
            # No ending fits the budget any more: the answer will be cut; stop planning.
            self.next_check = -1
            return
        ending = self.compiler.tokenize(b"".join(self.compiler.vocab_bytes(t) for t in chars))
        need = len(ending) + 1 + ENDING_MARGIN
        # Close once the budget is down to twice what the ending needs: one more token of the
        # model's could open a structure that needs far more to close (a second tool call, a
        # nested object with required fields), and the ending must still fit after it.
        if remaining <= 2 * need:
            if len(ending) > remaining:
                self.next_check = -1  # too late to finish: let the answer be cut
            else:
                self.forced = ending + [self.compiler.eos_id] if len(ending) < remaining else ending
            return
        # Plan again at halving distances (remaining 500 -> 270 -> 155 ...), every step near the end.
        self.next_check = remaining - max(1, (remaining - 2 * need) // 2)

    def plan_ending(self, scratch: Tensor, index: int, limit: int) -> list[int] | None:
        """The tokens of a short way from here to the end of the grammar, one character each
        where possible; None if none is found within `limit`. `scratch` is a bitmask whose row
        `index` may be overwritten.

        Greedy, one character a step. A character the previous step did not allow comes first
        (it is the grammar moving on: '@' in `[a-z]+@`, '"' once minLength is met), then one not
        written in the last few steps (so `(ab)+c` ends with 'c'), then ENDING_ORDER."""
        matcher = self.matcher.fork()
        c = self.compiler
        ending: list[int] = []
        row = scratch[index]
        previous: Tensor | None = None  # which candidates the previous step allowed
        matcher.fill_next_token_bitmask(scratch, index)
        while len(ending) < limit:
            if allowed(row, c.eos_id):
                return ending
            now = ((row[c.ending_words] >> c.ending_bits) & 1).bool()
            candidates = now.nonzero().view(-1).tolist()
            if not candidates:
                # No single character fits (a multi-byte literal, say): take any allowed token.
                ids = _allowed_ids(row, c.vocab_size)
                if not ids or not matcher.accept_token(ids[0]):
                    return None
                ending.append(ids[0])
                previous = None
                matcher.fill_next_token_bitmask(scratch, index)
                continue
            recent = ending[-4:]
            tokens = c.ending_tokens.tolist()
            candidates.sort(key=lambda rank: (1 if previous is not None and bool(previous[rank]) else 0,
                                              recent.count(tokens[rank]), rank))
            # Take the first character that moves the grammar on (its mask changes): in `[a-z]+@`
            # another letter would leave it where it was, '@' does not.
            before = row.clone()
            chosen = None
            for rank in candidates[:_MAX_TRIES]:
                matcher.accept_token(tokens[rank])
                matcher.fill_next_token_bitmask(scratch, index)
                if allowed(row, c.eos_id) or not torch.equal(row, before):
                    chosen = tokens[rank]
                    break
                matcher.rollback(1)
            if chosen is None:  # every character keeps the state (a string below its minLength)
                chosen = tokens[candidates[0]]
                matcher.accept_token(chosen)
                matcher.fill_next_token_bitmask(scratch, index)
            ending.append(chosen)
            previous = now
        return None


def _allowed_ids(row: Tensor, vocab_size: int) -> list[int]:
    bits = (row.unsqueeze(1) >> torch.arange(32, dtype=torch.int32)) & 1
    return bits.reshape(-1)[:vocab_size].nonzero().view(-1).tolist()
