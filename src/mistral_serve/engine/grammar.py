"""Constrained decoding: the grammar a request asks for, compiled once, and a matcher per sequence
that masks the tokens which would break it.

xgrammar does the grammar work (JSON Schema, regex and EBNF to a pushdown automaton with a
per-token mask cache). It was picked over llguidance and outlines-core by measurement on the v3
vocabulary (32,768 tokens, this machine): its mask takes ~0.035 ms per token against ~0.8-50 ms
for llguidance as wired here, and it keeps numeric bounds (`minimum`/`maximum`) that
outlines-core's regex translation drops. See the README, "Structured outputs".

A sequence's grammar state (engine/grammar_state.py) adds a trigger (tool calls) and a budget
(a planned ending, so that the output parses when `max_tokens` would cut it).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import Collection, Sequence

import torch
import xgrammar as xgr
from torch import Tensor

from .grammar_state import ENDING_ORDER, GrammarState
from .params import GuidedDecoding, ParamError

# response_format json_object: any JSON object.
JSON_OBJECT = '{"type": "object", "additionalProperties": true}'
# Compiled grammars kept, most recently used first.
CACHE_SIZE = 256

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
        # The ending planner's candidates, in ENDING_ORDER, and where their bits are in a mask.
        self.ending_tokens = torch.tensor([self.byte_token[b] for b in ENDING_ORDER if b in self.byte_token])
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


def new_bitmask(rows: int, vocab_size: int) -> Tensor:
    """An all-allowed bitmask (rows, ceil(V/32)) int32."""
    return xgr.allocate_token_bitmask(rows, vocab_size)


def apply_bitmask(logits: Tensor, bitmask: Tensor, rows: list[int]) -> None:
    """Set to -inf, in place, the logits (B, V) of tokens bitmask[i] refuses, for each i in rows."""
    if rows:
        xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device), indices=rows)
