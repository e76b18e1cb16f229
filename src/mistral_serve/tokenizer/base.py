"""The one tokenizer interface the engine and the server use, and the logic all tokenizers share.

Two implementations exist: `MistralCommonTokenizer` (mistral.py: Mistral's own tokenizer files and
chat formats, via mistral-common) and `CheckpointTokenizer` (checkpoint.py: a fine-tune's or a
GGUF file's own vocabulary and Jinja chat template, via Hugging Face `tokenizers`). Which one a
checkpoint gets is decided once, in choose.py (`load_tokenizer`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .detokenizer import IncrementalDetokenizer, has_unfinished_character

if TYPE_CHECKING:
    from .mistral import MistralCommonTokenizer

# How far back `_ends_inside_character` looks. A UTF-8 character is at most 4 bytes, so 3 tokens
# with bytes suffice; the rest is room for control tokens inside a character, which a
# byte-level decoder skips (b"" runs), e.g. [<0xE4 byte>, <|im_end|>, <0xB8>, <0xAD>].
_TAIL_TOKENS = 8

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def byte_fallback_pieces(pieces: Iterable[str], is_special: Callable[[int], bool]) -> dict[int, bytes]:
    """Sentencepiece-style vocabularies: the ids of the byte-fallback pieces ("<0xE4>") and the
    byte each stands for. Only these carry partial characters; every other piece is whole
    characters and ends a run of bytes."""
    table = {}
    for i, piece in enumerate(pieces):
        match = _BYTE_PIECE.fullmatch(piece)
        if match and not is_special(i):
            table[i] = bytes([int(match.group(1), 16)])
    return table


class TokenizerError(ValueError):
    """Tokenizer file cannot be read/used. Message names the file."""


class ChatTemplateError(ValueError):
    """A chat request the template cannot express.

    The message names the rule broken (e.g. 'the conversation must start with a user or system
    message'), readable for an API user.
    """


class Tokenizer(ABC):
    """A checkpoint's tokenizer: chat template, raw text, and decoding.

    Attributes every implementation sets:
      path: the file the vocabulary came from (tokenizer.model.v3, tokenizer.json, model.gguf).
      version: a short label for logs and errors: mistral-common's version ("v1", "v3", "v7"),
        or for a checkpoint tokenizer e.g. "tokenizer.json (ChatML template)".
      vocab_size: how many token ids the tokenizer answers for (see each implementation).
      bos_id, eos_id: beginning / end of sequence ids (bos_id is None when the vocabulary has
        none, e.g. Qwen's).
      stop_ids: every token that ends a generated answer: eos plus the template's end-of-turn
        tokens (`<|im_end|>`, `<|eot_id|>`, ...). Mistral's formats end a turn with eos alone.
      supports_tools: whether encode_chat accepts tools and tool messages.
      template: who renders chat prompts: "mistral" (mistral-common's own code for the
        `[INST]` formats) or "checkpoint" (a Jinja chat template, the checkpoint's own or one
        given with --chat-template PATH, over the checkpoint's own vocabulary).
    """

    path: Path
    version: str
    vocab_size: int
    bos_id: int | None
    eos_id: int
    stop_ids: frozenset[int]
    supports_tools: bool
    template: str

    @classmethod
    def from_file(cls, path: Path) -> MistralCommonTokenizer:
        """Load a mistral-common tokenizer file (`*tekken*.json`, `*.model`, `*.model.vN`).

        Kept on the base class because that is how callers have always loaded one. Any failure
        raises TokenizerError naming the file.
        """
        from .mistral import MistralCommonTokenizer

        return MistralCommonTokenizer.from_file(path)

    # -- what each implementation provides ------------------------------------------------

    @abstractmethod
    def encode_chat(self, messages: list[dict], tools: list[dict] | None = None, *,
                    continue_final: bool = False, add_generation_prompt: bool = True) -> list[int]:
        """The prompt tokens for an OpenAI-style conversation; ChatTemplateError when the
        template cannot express it (the message is for the API user).

        continue_final: the prompt ends inside the last message, an assistant message the
          answer continues (no end-of-turn after it). A last message with Mistral's
          `"prefix": true` asks for the same. (See conversation.py for the shared rules.)
        add_generation_prompt: without continue_final, whether the prompt opens the
          assistant's turn (transformers' and vLLM's option of that name). Mistral's formats
          open it by closing the user's turn (`[/INST]`), so there it changes nothing.
        """

    @abstractmethod
    def encode(self, text: str, bos: bool = True) -> list[int]:
        """Raw text, no template (for /v1/completions). `bos`: add what the tokenizer puts at
        the start of a text (Mistral: BOS; a checkpoint: what its config says, often nothing)."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special/control tokens dropped."""

    @abstractmethod
    def id_to_piece(self, i: int) -> str:
        """The vocabulary's spelling of one token ("▁Hello", "ĠHello", "<0x0A>", "[INST]")."""

    @abstractmethod
    def is_control(self, i: int) -> bool:
        """Whether token `i` is a special/control token (no text of its own)."""

    @abstractmethod
    def control_token(self, name: str) -> int | None:
        """The id of a control token such as "[TOOL_CALLS]", or None if this vocabulary lacks it."""

    @abstractmethod
    def _run_bytes(self, i: int) -> bytes | None:
        """The raw bytes token `i` adds to the decoder's current byte run, or None when the token
        ends the run (the decoder turns the bytes gathered so far into text there). b"" means
        the token adds nothing but the run goes on (a control token a byte-level decoder skips)."""

    # -- shared -----------------------------------------------------------------------------

    @property
    def has_chat_template(self) -> bool:
        """Whether encode_chat can work at all (False: a checkpoint without a chat template)."""
        return True

    def detokenizer(self, context: Sequence[int] = ()) -> IncrementalDetokenizer:
        """A streaming decoder; `context` are tokens the output continues (see there)."""
        return IncrementalDetokenizer(self, context)

    def token_bytes(self, i: int) -> bytes:
        """The bytes one token stands for, as the OpenAI API reports them in logprobs: a byte
        piece is its byte, '▁' is a space, a control token is its name."""
        if self.is_control(i):
            return self.id_to_piece(i).encode()
        run = self._run_bytes(i)
        if run is not None:
            return run
        return self.id_to_piece(i).replace("\u2581", " ").encode()

    def grammar_vocab(self) -> list[bytes]:
        """Each token's bytes as a grammar matches them, b"" for control tokens (which no grammar
        produces; `[TOOL_CALLS]` is forced by the engine instead). One entry per id below
        vocab_size."""
        return [b"" if self.is_control(i) else self.token_bytes(i) for i in range(self.vocab_size)]

    def _ends_inside_character(self, ids: Sequence[int]) -> bool:
        """Whether decoding `ids` now would cut a UTF-8 character that later tokens may finish."""
        # Only the last 3 bytes of the trailing run can be an unfinished character; they come
        # from at most the last 3 tokens that carry bytes.
        tail = b""
        for token_id in reversed(ids[-_TAIL_TOKENS:]):
            piece = self._run_bytes(token_id)
            if piece is None:
                break
            tail = piece + tail
            if len(tail) >= 3:
                break
        return has_unfinished_character(tail[-3:])
