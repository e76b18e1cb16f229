"""Tokenizer wrapper: the incremental detokenizer streams exactly the decoded text (emoji, CJK,
byte-fallback tokens, control tokens, spaces, random ids), in a short window, and continues a prompt.

Uses only the tokenizer files bundled with mistral-common; no network.
"""

from __future__ import annotations

import random
import re

import pytest

from mistral_serve.tokenizer import IncrementalDetokenizer, Tokenizer, bundled_tokenizer_file
from support.tokenizer_versions import ALL_VERSIONS, SPM_VERSIONS

BYTE_PIECE = re.compile(r"^<0x[0-9A-F]{2}>$")


# --- streaming ------------------------------------------------------------------------------


def _stream(tok: Tokenizer, ids: list[int]) -> list[str]:
    detok = tok.detokenizer()
    pieces = [detok.add(i) for i in ids]
    pieces.append(detok.flush())
    assert detok.token_ids == ids
    assert detok.text == "".join(pieces)
    return pieces


def _check_stream(tok: Tokenizer, ids: list[int]) -> list[str]:
    pieces = _stream(tok, ids)
    full = tok.decode(ids)
    assert "".join(pieces) == full
    for piece in pieces:
        assert isinstance(piece, str)
        piece.encode("utf-8")  # no lone surrogates: every piece is whole characters
        if "\ufffd" not in full:
            assert "\ufffd" not in piece
    return pieces


TEXTS = [
    "Hello world",
    "😀👍🏽 emoji with a skin tone, 👨‍👩‍👧 and a family",
    "世界 and 日本語のテキスト",
    "Crème brûlée, naïve café, Ærøskøbing, Ελληνικά, Привет",
    "multiple   spaces  and\ttabs",
    "lines\nand\n\nblank lines\n",
    "   leading spaces",
    " one leading space",
    "𠜎𠜱𠝹 rare CJK, 龘 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "def f(x):\n    return x  # code\n",
]


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("text", TEXTS)
def test_detokenizer_texts(version: str, text: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    ids = tok.encode(text, bos=True) + [tok.eos_id]
    _check_stream(tok, ids)
    # Generated text usually continues after a prompt, so the first piece is not at the start.
    _check_stream(tok, tok.encode("Answer:", bos=True) + tok.encode(text, bos=False))


@pytest.mark.parametrize("version", SPM_VERSIONS)
def test_detokenizer_holds_back_byte_fallback(version: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    ids = tok.encode("a𠜎b", bos=False)
    pieces = [tok.id_to_piece(i) for i in ids]
    assert sum(bool(BYTE_PIECE.match(p)) for p in pieces) == 4  # the character is 4 byte pieces
    detok = tok.detokenizer()
    out = [detok.add(i) for i in ids]
    first_byte = next(k for k, p in enumerate(pieces) if BYTE_PIECE.match(p))
    # Nothing while the character is incomplete, then all of it at once.
    assert out[first_byte:first_byte + 3] == ["", "", ""]
    assert "𠜎" in out[first_byte + 3]
    assert "".join(out) + detok.flush() == tok.decode(ids) == "a𠜎b"


@pytest.mark.parametrize("version", SPM_VERSIONS)
def test_detokenizer_real_replacement_characters(version: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    byte = {int(piece[3:5], 16): i for i in range(tok.vocab_size)
            if BYTE_PIECE.match(piece := tok.id_to_piece(i))}
    word = tok.encode("word", bos=False)
    replacement_piece = next(i for i in range(tok.vocab_size) if tok.id_to_piece(i) == "\ufffd")

    detok = tok.detokenizer()
    assert detok.add(word[0]) == "word"
    # The vocabulary's own U+FFFD and bytes that can never form a character are real output:
    # they are released at once, not held back.
    assert detok.add(replacement_piece) == "\ufffd"
    assert detok.add(byte[0x80]) == "\ufffd"  # a continuation byte with no lead byte
    assert detok.add(byte[0xE4]) == ""        # may still become a character...
    assert detok.add(byte[0x41]) == "\ufffdA"  # ...but "A" is not a continuation byte
    assert detok.add(byte[0xE4]) == ""
    assert detok.add(byte[0xB8]) == ""
    assert detok.flush() == tok.decode([byte[0xE4], byte[0xB8]])  # cut off: flushed as is
    assert detok.text == tok.decode(detok.token_ids)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_detokenizer_control_tokens_and_spaces(version: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    hello, world = tok.encode("Hello", bos=False), tok.encode(" world", bos=False)
    inst = 3  # [INST] in v3 and tekken; an ordinary piece in v1
    for ids in ([tok.bos_id, *hello, tok.eos_id, *world],
                [tok.bos_id, tok.bos_id, *world, tok.eos_id, tok.eos_id, *world],
                [*hello, inst, inst, inst, *world, tok.eos_id],
                [tok.eos_id, *world, *world]):
        _check_stream(tok, ids)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_detokenizer_random_ids(version: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    rng = random.Random(20240611)
    controls = [i for i in range(1000) if tok.is_control(i)]
    if tok.vocab_size == 131072:
        byte_ids = list(range(1000, 1256))  # tekken: the 256 single-byte tokens follow the specials
        assert tok.decode([1000 + ord("A")]) == "A" and tok.is_control(999)
    else:
        byte_ids = [i for i in range(tok.vocab_size) if BYTE_PIECE.match(tok.id_to_piece(i))]
    spaces = [i for i in range(tok.vocab_size) if tok.id_to_piece(i) in ("▁", "▁▁", " ")]
    assert len(byte_ids) == 256 and controls and spaces

    for trial in range(40):
        length = rng.randint(50, 400)
        if trial % 2 == 0:
            # Uniform over the whole vocabulary (byte and control tokens included).
            ids = [rng.randrange(tok.vocab_size) for _ in range(length)]
        else:
            # Weighted towards the hard cases: bytes, control tokens, bare spaces.
            pools = [byte_ids, controls, spaces, range(tok.vocab_size)]
            ids = [rng.choice(rng.choices(pools, weights=[4, 2, 1, 3])[0]) for _ in range(length)]
        _check_stream(tok, ids)


def test_detokenizer_flush_twice_and_empty(tokenizers: dict[str, Tokenizer]) -> None:
    detok = IncrementalDetokenizer(tokenizers["v3"])
    assert detok.flush() == "" and detok.text == "" and detok.token_ids == []
    assert detok.add(tokenizers["v3"].bos_id) == ""
    assert detok.flush() == "" and detok.flush() == ""


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_detokenizer_window_stays_short(version: str, tokenizers: dict[str, Tokenizer],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Streaming must cost the same per token however long the answer: runs of tokens that decode
    # to nothing on their own (control tokens, bare spaces) must not make the window grow.
    tok = tokenizers[version]
    space = next(i for i in range(tok.vocab_size) if tok.id_to_piece(i) in ("▁", " "))
    ids = [*tok.encode("Hi", bos=True), *[tok.eos_id] * 300, *[space] * 300,
           *tok.encode(" there", bos=False), *[tok.bos_id, space] * 300]
    expected = tok.decode(ids)

    longest = 0
    decode = tok.decode

    def measured(some_ids: list[int]) -> str:
        nonlocal longest
        longest = max(longest, len(some_ids))
        return decode(some_ids)

    monkeypatch.setattr(tok, "decode", measured)
    detok = tok.detokenizer()
    text = "".join(detok.add(i) for i in ids) + detok.flush()
    assert text == expected
    assert longest <= 8


@pytest.mark.parametrize("version", ["v1", "v3"])
@pytest.mark.parametrize("prompt, continuation", [
    ("Hello", " world, and more"), ("Once upon a", " time 世界 😀"), ("Numbers: 1", "23 456"),
])
def test_detokenizer_with_context_decodes_a_continuation_in_place(version, prompt, continuation):
    """A raw completion continues its prompt: the first piece keeps its leading space, and the
    pieces are exactly what the full text adds to the prompt's text."""
    tok = Tokenizer.from_file(bundled_tokenizer_file(version))
    prompt_ids = tok.encode(prompt, bos=True)
    full_ids = tok.encode(prompt + continuation, bos=True)
    assert full_ids[:len(prompt_ids)] == prompt_ids or pytest.skip("tokenization splits differently")
    output = full_ids[len(prompt_ids):]
    detok = tok.detokenizer(prompt_ids)
    pieces = [detok.add(t) for t in output] + [detok.flush()]
    assert "".join(pieces) == tok.decode(full_ids)[len(tok.decode(prompt_ids)):]
    assert tok.detokenizer().add(output[0]) != pieces[0] or not pieces[0].startswith(" ")
