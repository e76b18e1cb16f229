"""Streaming detokenization: token ids in one at a time, text pieces out, never half a character."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Tokenizer


# How many trailing prompt tokens prime a continuation's detokenizer.
_CONTEXT_TOKENS = 6


class IncrementalDetokenizer:
    """For streaming: feed generated token ids one at a time, get new text pieces.

    `"".join(pieces) + flush()` is always exactly `tokenizer.decode(token_ids)`, and no piece
    ends in the middle of a character.

    Decoding a slice of tokens on its own differs from decoding it in place (sentencepiece drops
    the leading space of the first piece; bytes of one character may be split off), so each new
    piece is the difference between decoding a short window of already-emitted tokens with and
    without the new ones. The window starts where an earlier piece was released, a point where
    the decoder holds no partial character, and it decodes to non-empty text, so the decoder is
    past the start-of-text rules by the time it reaches the new tokens: exactly as in the full
    decode.
    """

    def __init__(self, tokenizer: Tokenizer, context: Sequence[int] = ()) -> None:
        """`context`: tokens the output continues (the end of a raw prompt), so its first piece
        is decoded in place (" world" after "Hello") rather than as the start of a text."""
        self._tokenizer = tokenizer
        self.token_ids: list[int] = []
        self._pieces: list[str] = []
        # The window: token groups released in earlier steps (each starts at a clean character
        # boundary) and what they decode to together.
        self._window: list[list[int]] = []
        self._window_text = ""
        self._unreleased_from = 0  # token_ids[_unreleased_from:] are not yet part of any piece
        ctx = list(context)[-_CONTEXT_TOKENS:]
        # Start the window on a character boundary: drop bytes that continue a character.
        while ctx and (b := tokenizer._run_bytes(ctx[0])) is not None and b and 0x80 <= b[0] <= 0xBF:
            ctx.pop(0)
        if ctx and (text := tokenizer.decode(ctx)):
            self._window, self._window_text = [ctx], text

    @property
    def text(self) -> str:
        """All text emitted so far."""
        return "".join(self._pieces)

    def add(self, token_id: int) -> str:
        """The new text since the last call; '' when held back."""
        self.token_ids.append(token_id)
        if self._tokenizer._ends_inside_character(self.token_ids):
            # The tail is an incomplete byte sequence: decoding now would show U+FFFD for a
            # character the next tokens may complete. A U+FFFD that is really in the output
            # (the vocabulary's own piece, or bytes that can never form a character) is not
            # held.
            return ""
        return self._release()

    def flush(self) -> str:
        """At the end of generation: whatever is still held back."""
        if self._unreleased_from == len(self.token_ids):
            return ""
        return self._release()

    def _release(self) -> str:
        tokenizer = self._tokenizer
        new_ids = self.token_ids[self._unreleased_from:]
        self._unreleased_from = len(self.token_ids)
        window_ids = [i for group in self._window for i in group]
        text = tokenizer.decode(window_ids + new_ids)
        if text.startswith(self._window_text):
            piece = text[len(self._window_text):]
        else:
            # Cannot happen while the window starts on a character boundary; should a tokenizer
            # break that, fall back to the full decode (slow, but the text stays exact).
            full = tokenizer.decode(self.token_ids)
            emitted = self.text
            piece = full[len(emitted):] if full.startswith(emitted) else ""
            self._window, self._window_text = [list(self.token_ids)], full
            self._pieces.append(piece)
            return piece
        self._pieces.append(piece)
        self._slide_window(new_ids, text)
        return piece

    def _slide_window(self, new_ids: list[int], text: str) -> None:
        tokenizer = self._tokenizer
        alone = tokenizer.decode(new_ids) if self._window else text
        if alone:
            # The usual case: the tokens just released make a window of their own.
            self._window, self._window_text = [new_ids], alone
            return
        # The new tokens decode to nothing by themselves (control tokens, a lone "▁" that
        # sentencepiece strips at the start). Keep the older tokens so the next piece is still
        # decoded as mid-text. Control tokens at a character boundary change nothing for what
        # follows, so they are left out and cannot pile up.
        kept = [i for i in new_ids if not tokenizer.is_control(i)]
        if kept:
            self._window.append(kept)
        self._window_text = text
        # Drop leading groups while the rest still decodes to text (a run of lone "▁" pieces).
        while len(self._window) > 1:
            rest = [i for group in self._window[1:] for i in group]
            rest_text = tokenizer.decode(rest)
            if not rest_text:
                break
            self._window, self._window_text = self._window[1:], rest_text


def has_unfinished_character(tail: bytes) -> bool:
    """Whether some suffix of `tail` is a lead byte followed by too few continuation bytes.

    Deliberately lenient (it accepts lead bytes a strict decoder rejects, such as 0xC0): holding
    text back a token longer than needed is harmless, releasing half a character is not.
    """
    for start in range(len(tail)):
        lead, rest = tail[start], tail[start + 1:]
        if not all(0x80 <= b <= 0xBF for b in rest):
            continue
        if 0xC0 <= lead <= 0xDF:
            needed = 2
        elif 0xE0 <= lead <= 0xEF:
            needed = 3
        elif 0xF0 <= lead <= 0xF7:
            needed = 4
        else:
            continue
        if 1 + len(rest) < needed:
            return True
    return False
