"""Constrained decoding: the grammar a request asks for, compiled once, and a matcher per sequence
that masks the tokens which would break it.

xgrammar does the grammar work (JSON Schema, regex and EBNF to a pushdown automaton with a
per-token mask cache). It was picked over llguidance and outlines-core by measurement on the v3
vocabulary (32,768 tokens, this machine): its mask takes ~0.035 ms per token against ~0.8-50 ms
for llguidance as wired here, and it keeps numeric bounds (`minimum`/`maximum`) that
outlines-core's regex translation drops. See the README, "Structured outputs".

A sequence's grammar state adds two things xgrammar leaves to the server:
  * a trigger: tool calls are free text until the model writes `[TOOL_CALLS]`, then the calls'
    schema applies; `tool_choice: required` forces the trigger as the first token;
  * a budget: as the answer nears its token limit, the state plans the shortest way to finish
    the grammar (closing strings, brackets, required fields) and forces it, so the output still
    parses when `max_tokens` would otherwise cut it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from typing import Collection, Sequence

import torch
import xgrammar as xgr
from torch import Tensor

from .params import GuidedDecoding, ParamError

# response_format json_object: any JSON object.
JSON_OBJECT = '{"type": "object", "additionalProperties": true}'
# Tokens of slack kept when planning the ending, on top of the ending itself.
ENDING_MARGIN = 4
# Compiled grammars kept, most recently used first.
CACHE_SIZE = 256

# The order in which the ending planner tries single characters: one of each kind first (close a
# string, a digit, a letter, close a bracket, separators), then the rest of ASCII punctuation,
# the other digits and letters, and whitespace last.
_LEADING = b'"0aA}],:{[-._'
_ENDING_ORDER = (_LEADING + bytes(b for b in range(33, 127) if b not in _LEADING and not chr(b).isalnum())
                 + bytes(b for b in range(33, 127) if b not in _LEADING and chr(b).isalnum()) + b" \n")
# Characters tried per step before the planner accepts one that leaves the grammar where it was.
_MAX_TRIES = 40

log = logging.getLogger(__name__)

# xgrammar prefixes its messages with a time stamp and the C++ source line.
_XGR_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:\d+: (Check failed: \(.*?\) is false: )?")


class GrammarError(ParamError):
    """A constraint the grammar engine cannot compile; `param` names the request field."""


def _xgr_message(err: Exception) -> str:
    return _XGR_PREFIX.sub("", str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)


class GrammarCompiler:
    """Compiles GuidedDecoding specs for one tokenizer, caching the results by spec.

    Thread-safe: the server compiles in a worker thread before admitting a request, so the
    engine thread finds the grammar ready and never stalls a step on a compile.
    """

    def __init__(self, vocab: Sequence[bytes], vocab_size: int, eos_id: int,
                 stop_ids: Collection[int] = ()) -> None:
        """vocab: each token's bytes (b"" for control tokens, which no grammar may produce);
        vocab_size: the model's logit width (may exceed len(vocab)); eos_id: the token a forced
        ending closes with; stop_ids: every token that may end a finished grammar's answer
        (eos and end-of-turn tokens such as <|im_end|>)."""
        self.vocab_size = vocab_size
        self.eos_id = eos_id
        self._vocab = list(vocab)
        info = xgr.TokenizerInfo(self._vocab, xgr.VocabType.RAW, vocab_size=vocab_size,
                                 stop_token_ids=sorted({eos_id, *stop_ids}))
        self._compiler = xgr.GrammarCompiler(info, cache_enabled=False)
        self._cache: OrderedDict[GuidedDecoding, xgr.CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        # The token that writes each single byte, for planning endings.
        self.byte_token: dict[int, int] = {}
        # Every piece's token, to write a planned ending in as few tokens as the vocabulary allows.
        # Where two tokens have the same bytes the later id wins: byte-fallback tokens (`<0x22>`)
        # come first in Mistral's vocabularies and the regular piece (`"`) reads better.
        self.piece_token: dict[bytes, int] = {}
        for token_id, piece in enumerate(self._vocab):
            if piece:
                self.piece_token[piece] = token_id
                if len(piece) == 1:
                    self.byte_token[piece[0]] = token_id
        self.longest_piece = max(map(len, self.piece_token), default=1)
        # The ending planner's candidates, in _ENDING_ORDER, and where their bits are in a mask.
        self.ending_tokens = torch.tensor([self.byte_token[b] for b in _ENDING_ORDER if b in self.byte_token])
        self.ending_words = self.ending_tokens // 32
        self.ending_bits = (self.ending_tokens % 32).to(torch.int32)

    def vocab_bytes(self, token_id: int) -> bytes:
        return self._vocab[token_id]

    def tokenize(self, data: bytes) -> list[int]:
        """`data` in tokens, longest piece first. A byte-level grammar accepts any tokenization
        of the same bytes, so this is as valid as the one-character-a-token original."""
        tokens, i = [], 0
        while i < len(data):
            for size in range(min(self.longest_piece, len(data) - i), 0, -1):
                token = self.piece_token.get(data[i:i + size])
                if token is not None:
                    tokens.append(token)
                    i += size
                    break
            else:
                raise ValueError(f"byte {data[i]} has no token")
        return tokens

    def compile(self, spec: GuidedDecoding) -> xgr.CompiledGrammar:
        with self._lock:
            compiled = self._cache.get(spec)
            if compiled is not None:
                self._cache.move_to_end(spec)
                self.hits += 1
                return compiled
        compiled = self._compile(spec)
        with self._lock:
            self.misses += 1
            self._cache[spec] = compiled
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return compiled

    def _compile(self, spec: GuidedDecoding) -> xgr.CompiledGrammar:
        try:
            if spec.kind in ("json_schema", "json_object"):
                # Compact JSON, with the ", " and ": " separators Mistral's models write (tool calls
                # are trained in exactly that form). Free whitespace lets a model, the random demo
                # above all, spend its whole budget on indentation before the first key.
                schema = JSON_OBJECT if spec.kind == "json_object" else spec.value
                body = _no_control_characters(xgr.Grammar.from_json_schema(schema, any_whitespace=False))
                # One optional leading space: Mistral's tokenizer starts words (and answers) with
                # one, and the model should be free to write " {" as it would unconstrained.
                grammar = xgr.Grammar.concat(xgr.Grammar.from_ebnf('root ::= " "?'), body)
            elif spec.kind == "regex":
                grammar = xgr.Grammar.from_regex(spec.value)
            elif spec.kind == "choice":
                choices = json.loads(spec.value)
                grammar = xgr.Grammar.from_ebnf("root ::= " + " | ".join(_ebnf_literal(c) for c in choices))
            elif spec.kind == "grammar":
                grammar = xgr.Grammar.from_ebnf(spec.value)
            else:
                raise GrammarError(spec.param, f"unknown constraint kind {spec.kind!r}")
            return self._compiler.compile_grammar(grammar)
        except GrammarError:
            raise
        except Exception as err:  # xgrammar reports every unsupported construct as RuntimeError
            what = {"json_schema": "JSON schema", "json_object": "JSON grammar", "regex": "regular expression",
                    "choice": "choice list", "grammar": "grammar"}.get(spec.kind, spec.kind)
            raise GrammarError(spec.param, f"{spec.param}: this {what} cannot be used for constrained "
                               f"decoding: {_xgr_message(err)}") from None

    def state(self, spec: GuidedDecoding) -> GrammarState:
        return GrammarState(self, self.compile(spec), spec)


# xgrammar 0.2.8 writes the characters of a string with minLength/maxLength as [^"\\\r\n], which
# lets raw control characters (U+0000-U+001F) in: JSON forbids them and strict parsers (Python's
# json, the browser's JSON.parse) refuse the answer. Its plain strings use the right class.
_LOOSE_STRING_CHAR = '[^\\"\\\\\\r\\n]'
_JSON_STRING_CHAR = '[^\\0-\\x1f\\"\\\\]'


def _no_control_characters(grammar: xgr.Grammar) -> xgr.Grammar:
    text = str(grammar)
    return xgr.Grammar.from_ebnf(text.replace(_LOOSE_STRING_CHAR, _JSON_STRING_CHAR)) if _LOOSE_STRING_CHAR in text else grammar


def _ebnf_literal(text: str) -> str:
    # An EBNF string literal: JSON's escaping (\" \\ \n \uXXXX) is what xgrammar's reader takes.
    return json.dumps(text) if text else '""'


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
        written in the last few steps (so `(ab)+c` ends with 'c'), then _ENDING_ORDER."""
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


def new_bitmask(rows: int, vocab_size: int) -> Tensor:
    """An all-allowed bitmask (rows, ceil(V/32)) int32."""
    return xgr.allocate_token_bitmask(rows, vocab_size)


def apply_bitmask(logits: Tensor, bitmask: Tensor, rows: list[int]) -> None:
    """Set to -inf, in place, the logits (B, V) of tokens bitmask[i] refuses, for each i in rows."""
    if rows:
        xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device), indices=rows)
