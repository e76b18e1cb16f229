"""A Hugging Face `tokenizers.Tokenizer` built from a GGUF file's vocabulary fields.

A GGUF file carries no tokenizer.json, only llama.cpp's description of one:
`tokenizer.ggml.model` says which algorithm, `tokenizer.ggml.tokens` / `token_type` / `scores` /
`merges` hold the vocabulary, and `tokenizer.ggml.pre` names how text is split before BPE. Two
algorithms are supported:

- "gpt2": byte-level BPE (SmolLM2, Qwen2, Llama 3). Every byte of the text is first spelled as
  one printable character (GPT-2's byte alphabet, `BYTE_CHARS`), so "Ġhello" is " hello"; the
  text is split by a regex that depends on the `pre` name (`_PRE_SPLITS`), then merged.
- "llama": sentencepiece-style BPE (Mistral, Llama 2). Spaces are "▁", a text gets one "▁" in
  front (as does the text after each special token, as in llama.cpp), pieces merge in the order
  of their scores, and a character missing from the vocabulary falls back to byte pieces "<0xE4>".

Token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte) decide which
tokens are special: unknown, control and unused ones become special added tokens (matched whole
in text, dropped by decode), user-defined ones plain added tokens (matched whole, decoded).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.models import BPE

from .base import TokenizerError

log = logging.getLogger(__name__)

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPECIAL_TYPES = frozenset({UNKNOWN, CONTROL, UNUSED})
SUPPORTED_MODELS = ("gpt2", "llama")


def _byte_chars() -> tuple[str, ...]:
    # Bytes that are printable Latin-1 characters stand for themselves; the 68 others (controls,
    # space, DEL, NBSP, soft hyphen) take the characters from U+0100 on, in byte order, so that
    # 0x20 (space) becomes "Ġ" (U+0120) and 0x0A (newline) "Ċ" (U+010A).
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    chars, extra = [], 0
    for value in range(256):
        if value in printable:
            chars.append(chr(value))
        else:
            chars.append(chr(0x100 + extra))
            extra += 1
    return tuple(chars)


BYTE_CHARS: tuple[str, ...] = _byte_chars()
CHAR_BYTE: Mapping[str, int] = {char: value for value, char in enumerate(BYTE_CHARS)}


def byte_level_bytes(token: str) -> bytes:
    """The bytes a byte-level token stands for: "Ġhi" -> b" hi". A token with a character
    outside the byte alphabet (an added token stored as plain text) stands for its UTF-8."""
    try:
        return bytes(CHAR_BYTE[char] for char in token)
    except KeyError:
        return token.encode("utf-8")


def _spell_bytes(text: str) -> str:
    return "".join(BYTE_CHARS[value] for value in text.encode("utf-8"))


# How each `tokenizer.ggml.pre` splits text before BPE, as llama.cpp's table (llama-vocab.cpp)
# and the models' own tokenizer.json files do. Values: a regex for a Split, or a marker for the
# byte-level pre-tokenizer's built-in GPT-2 regex (optionally with single digits split first).
_GPT2 = "gpt2"
_DIGITS_THEN_GPT2 = "digits+gpt2"
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
           r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
           r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT4O = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
          r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
          r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
          r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

_PRE_GROUPS: dict[str, tuple[str, ...]] = {
    # "default" is what old files without a `pre` name get; llama.cpp approximates there (and
    # warns that quality suffers), transformers uses the GPT-2 regex, as we do.
    _GPT2: ("default", "gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "exaone4", "trillion",
            "granite-docling", "roberta-bpe", "jina-v1-en", "jina-v2-code", "jina-es", "jina-de",
            "jina-v2-es", "jina-v2-de", "gigachat", "a.x-4.0", "mellum", "modern-bert"),
    _DIGITS_THEN_GPT2: ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                        "minerva-7b"),
    _LLAMA3: ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
              "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe", "glm4", "chatglm-bpe"),
    _QWEN2: ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan"),
    _TEKKEN: ("tekken",),
    _GPT4O: ("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"),
}
_PRE_SPLITS: Mapping[str, str] = {name: split for split, names in _PRE_GROUPS.items() for name in names}
# Vocabularies whose BPE takes a word that is itself a token whole, without merging (llama.cpp's
# `ignore_merges`; Llama 3's tokenizer.json says the same).
_IGNORE_MERGES = frozenset({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                            "midm-2.0", "lfm2", "jina-v5-nano", "tekken"})
# Byte-level vocabularies that start a text with BOS unless the file says otherwise.
_ADDS_BOS = _IGNORE_MERGES


def gguf_adds_bos(meta: Mapping[str, Any]) -> bool:
    """Whether a text starts with BOS: `tokenizer.ggml.add_bos_token`, else llama.cpp's default
    (yes for sentencepiece vocabularies and Llama 3 / tekken byte-level ones)."""
    flag = meta.get("tokenizer.ggml.add_bos_token")
    if isinstance(flag, bool):
        return flag
    return meta.get("tokenizer.ggml.model") == "llama" or meta.get("tokenizer.ggml.pre") in _ADDS_BOS


def gguf_vocab_label(meta: Mapping[str, Any]) -> str:
    """A short name of the vocabulary for logs: "GGUF gpt2/smollm", "GGUF llama"."""
    model = meta.get("tokenizer.ggml.model")
    pre = meta.get("tokenizer.ggml.pre")
    return f"GGUF {model}/{pre}" if model == "gpt2" and pre else f"GGUF {model}"


def tokenizer_from_gguf(meta: Mapping[str, Any], origin: str) -> HFTokenizer:
    """The tokenizer a GGUF file's `tokenizer.ggml.*` fields describe. `origin` (the file) is
    named in every TokenizerError."""
    model = meta.get("tokenizer.ggml.model")
    if model not in SUPPORTED_MODELS:
        raise TokenizerError(f"{origin}: tokenizer.ggml.model {model!r} is not supported "
                             f"(supported: {', '.join(SUPPORTED_MODELS)})")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise TokenizerError(f"{origin}: tokenizer.ggml.tokens is missing or not a list of strings")
    types = meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise TokenizerError(f"{origin}: tokenizer.ggml.token_type has {len(types)} entries for "
                             f"{len(tokens)} tokens")
    merges = meta.get("tokenizer.ggml.merges")
    try:
        if model == "gpt2":
            if not merges:
                raise TokenizerError(f"{origin}: a gpt2 vocabulary needs tokenizer.ggml.merges")
            tokenizer = _byte_level(tokens, types, merges, meta.get("tokenizer.ggml.pre"), origin)
        else:
            scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
            tokenizer = _sentencepiece(tokens, types, scores, merges,
                                       meta.get("tokenizer.ggml.add_space_prefix", True) is not False)
    except TokenizerError:
        raise
    except Exception as err:  # tokenizers reports a bad vocabulary or regex as a plain Exception
        raise TokenizerError(f"{origin}: cannot build the {model} tokenizer ({err})") from err
    _add_special_tokens(tokenizer, tokens, types)
    return tokenizer


def sentencepiece_fields(path: Path) -> dict[str, Any]:
    """A sentencepiece model file (`tokenizer.model`) as the GGUF fields `tokenizer_from_gguf`
    reads, so one builder serves both. (User-defined pieces read as normal ones: sentencepiece's
    Python API does not tell them apart.)"""
    from sentencepiece import SentencePieceProcessor

    try:
        sp = SentencePieceProcessor(model_file=str(path))
    except Exception as err:
        raise TokenizerError(f"cannot load sentencepiece file {path}: {err}") from err
    n = sp.vocab_size()
    types = [UNKNOWN if sp.IsUnknown(i) else CONTROL if sp.IsControl(i) else UNUSED if sp.IsUnused(i)
             else BYTE if sp.IsByte(i) else NORMAL for i in range(n)]
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [sp.IdToPiece(i) for i in range(n)],
        "tokenizer.ggml.scores": [sp.GetScore(i) for i in range(n)],
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": sp.bos_id(),
        "tokenizer.ggml.eos_token_id": sp.eos_id(),
        "tokenizer.ggml.add_bos_token": True,
    }


def _byte_level(tokens: Sequence[str], types: Sequence[int], merges: Sequence[str], pre: Any,
                origin: str) -> HFTokenizer:
    vocab: dict[str, int] = {}
    for index, (token, kind) in enumerate(zip(tokens, types)):
        # Added tokens keep their text (they are matched in text as they are); a regular token
        # with a character outside the byte alphabet is a plain-text spelling: respell it.
        if kind == NORMAL and not all(char in CHAR_BYTE for char in token):
            token = _spell_bytes(token)
        vocab.setdefault(token, index)
    pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    split = _PRE_SPLITS.get(pre) if isinstance(pre, str) else _GPT2
    if split is None:
        log.warning("%s: unknown tokenizer.ggml.pre %r; splitting text with the GPT-2 regex, "
                    "which may tokenize some text differently from the model's own tokenizer",
                    origin, pre)
        split = _GPT2
    tokenizer = HFTokenizer(BPE(vocab=vocab, merges=pairs, ignore_merges=pre in _IGNORE_MERGES))
    if split == _GPT2:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif split == _DIGITS_THEN_GPT2:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    if split == _QWEN2:
        tokenizer.normalizer = normalizers.NFC()  # as Qwen2's own tokenizer.json has it
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _sentencepiece(tokens: Sequence[str], types: Sequence[int], scores: Sequence[float],
                   merges: Sequence[str] | None, space_prefix: bool) -> HFTokenizer:
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(token, index)
    unknown = next((t for t, kind in zip(tokens, types) if kind == UNKNOWN), None)
    pairs = ([tuple(merge.split(" ", 1)) for merge in merges] if merges
             else _merges_from_scores(tokens, types, scores))
    tokenizer = HFTokenizer(BPE(vocab=vocab, merges=pairs, unk_token=unknown, fuse_unk=True,
                                byte_fallback=True))
    # Spaces become "▁", and every stretch of text gets one "▁" in front (even one that starts
    # with a space, and each one after a special token), as sentencepiece and llama.cpp do it.
    # (transformers' own conversion prepends only at the very start of the text and not before
    # a leading space; mistral-common also encodes each text chunk with its own prefix.)
    steps = [normalizers.Prepend("\u2581")] if space_prefix else []
    tokenizer.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "\u2581")])
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if space_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tokenizer.decoder = decoders.Sequence(steps)
    return tokenizer


def _merges_from_scores(tokens: Sequence[str], types: Sequence[int],
                        scores: Sequence[float]) -> list[tuple[str, str]]:
    """BPE merges that reproduce sentencepiece's: sentencepiece joins, at each step, the adjacent
    pair whose joined piece has the highest score. So every way of cutting a regular piece into
    two regular pieces is a merge, ranked by the joined piece's score. Between equal scores
    (Mistral's runs of "▁") sentencepiece joins the leftmost pair first; ranking the longer left
    part first gives the same result, as the run grows from the left."""
    regular = {token: index for index, (token, kind) in enumerate(zip(tokens, types))
               if kind == NORMAL}
    ranked = []
    for token, index in regular.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in regular and right in regular:
                ranked.append((-scores[index], -len(left), -len(right), regular[left], regular[right],
                               left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _add_special_tokens(tokenizer: HFTokenizer, tokens: Sequence[str], types: Sequence[int]) -> None:
    special = [AddedToken(token, special=True, normalized=False)
               for token, kind in zip(tokens, types) if kind in SPECIAL_TYPES and token]
    user = [AddedToken(token, special=False, normalized=False)
            for token, kind in zip(tokens, types) if kind == USER_DEFINED and token]
    if special:
        tokenizer.add_special_tokens(special)
    if user:
        tokenizer.add_tokens(user)
