"""A checkpoint's own tokenizer: Hugging Face `tokenizers` plus a Jinja chat template.

For fine-tunes and GGUF files that bring their own vocabulary and chat format (Zephyr's
`<|user|>`, ChatML's `<|im_start|>` as in SmolLM2 and Qwen): the vocabulary comes from
tokenizer.json, from a GGUF file's metadata (gguf_vocab.py) or from a sentencepiece file; the
prompt is what the template renders, encoded as transformers' apply_chat_template encodes it
(special tokens written by the template are matched as special tokens, nothing is added).

Vocabulary size: `vocab_size` is the model's number of embedding rows (`model_vocab_size`).
A model may have more rows than the tokenizer has tokens (a padded embedding, e.g. rounded up
to a multiple of 64), never fewer (TokenizerError). Ids past the tokenizer's own count are
control tokens without text: decode drops them, id_to_piece is "", grammar_vocab has b"" for
them. So grammar_vocab() has one entry per model row and any sampled id decodes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer

from .base import ChatTemplateError, Tokenizer, TokenizerError, byte_fallback_pieces
from .conversation import check_continuable, final_prefix, merged_turns
from .gguf_vocab import byte_level_bytes
from .template import ChatTemplate, prepare_messages

# Tokens that end a turn in common chat formats. Those the template writes are stop tokens, so
# generation ends with the assistant's turn even where eos is another token (SmolLM2's eos is
# <|im_end|>, but many ChatML models end the text with <|endoftext|>).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                      "</s>", "<|end_of_text|>", "<|eom_id|>")
NO_TEMPLATE = ("this checkpoint has no chat template: send a prompt you format yourself to "
               "/v1/completions, or start the server with --chat-template PATH")


@dataclass(frozen=True)
class CheckpointSettings:
    """What a CheckpointTokenizer is made of besides the `tokenizers.Tokenizer`. Plain data, so
    the tokenizer pickles as (tokenizer JSON, settings)."""

    path: Path                      # the file the vocabulary came from
    source: str                     # its kind, for the label: "tokenizer.json", "GGUF gpt2/smollm"
    model_vocab_size: int
    eos_id: int
    bos_id: int | None = None
    add_bos: bool = False           # whether a raw text starts with bos (encode(bos=True))
    template: str | None = None     # the Jinja source
    template_origin: str = ""       # the file that held it, for errors
    template_is_override: bool = False  # given with --chat-template PATH
    special_tokens: dict[str, str] = field(default_factory=dict)  # template variables
    extra_stop_ids: tuple[int, ...] = ()  # generation_config.json, GGUF eot/eom ids


class CheckpointTokenizer(Tokenizer):
    """Tokenizer over a `tokenizers.Tokenizer`; see the module docstring for vocab_size."""

    def __init__(self, tokenizer: HFTokenizer, settings: CheckpointSettings) -> None:
        """Raises TokenizerError (naming the file) for a vocabulary larger than the model's or
        ids that do not exist, and for a template that does not compile."""
        self._tk = tokenizer
        self._settings = s = settings
        self.path = Path(s.path)
        self._own = tokenizer.get_vocab_size(with_added_tokens=True)
        if self._own > s.model_vocab_size:
            raise TokenizerError(f"{self.path}: the tokenizer has {self._own} tokens but the model's "
                                 f"vocabulary has only {s.model_vocab_size}: weights and tokenizer "
                                 "do not match")
        self.vocab_size = s.model_vocab_size
        self._pieces = [tokenizer.id_to_token(i) or "" for i in range(self._own)]
        self._control = frozenset(i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special)
        for name, token_id in (("eos", s.eos_id), ("bos", s.bos_id)):
            if token_id is not None and not 0 <= token_id < self._own:
                raise TokenizerError(f"{self.path}: the {name} token id {token_id} is outside the "
                                     f"vocabulary ({self._own} tokens)")
        self.eos_id, self.bos_id = s.eos_id, s.bos_id
        self.supports_tools = False
        self.template = "checkpoint"
        self._chat = ChatTemplate(s.template, s.template_origin or str(self.path)) \
            if s.template is not None else None
        self._kind, self._strip_space = _decoder_kind(tokenizer)
        self._bytes = self._byte_table()
        self.stop_ids = self._find_stop_ids()
        if self._chat is None:
            described = "no chat template"
        elif s.template_is_override:
            described = f"template {Path(s.template_origin).name}"
        else:
            described = f"{self._chat.family} template"
        self.version = f"{s.source} ({described})"

    def __reduce__(self) -> tuple[Any, tuple[str, CheckpointSettings]]:
        # tokenizers.Tokenizer serializes to its JSON; rebuilding from it needs no source file.
        return _restore, (self._tk.to_str(), self._settings)

    def __repr__(self) -> str:
        return (f"CheckpointTokenizer(path={str(self.path)!r}, version={self.version!r}, "
                f"vocab_size={self.vocab_size})")

    @property
    def has_chat_template(self) -> bool:
        return self._chat is not None

    # -- chat and raw text ------------------------------------------------------------------

    def encode_chat(self, messages: list[dict], tools: list[dict] | None = None, *,
                    continue_final: bool = False, add_generation_prompt: bool = True) -> list[int]:
        """The template's prompt for an OpenAI-style conversation, rendered as transformers'
        apply_chat_template renders it with the same two options (continue_final is its
        continue_final_message; a last message with "prefix": true asks for it too). Tools are
        not supported (ChatTemplateError).

        A conversation the template refuses as sent (e.g. "Conversation roles must alternate"
        for two user messages in a row, or a system message after the first turn) is rendered
        once more with its turns merged as mistral-common merges them (conversation.py); only if
        the template refuses that too is it an error, in the template's words.
        """
        if self._chat is None:
            raise ChatTemplateError(NO_TEMPLATE)
        prepared = prepare_messages(messages, tools)
        continuing = continue_final or final_prefix(messages)
        if continuing:
            check_continuable(prepared)
        special = self._settings.special_tokens
        try:
            text = self._chat.render(prepared, special, add_generation_prompt, continuing)
        except ChatTemplateError:
            merged = merged_turns(prepared)
            if merged == prepared:
                raise
            text = self._chat.render(merged, special, add_generation_prompt, continuing)
        return self._tk.encode(text, add_special_tokens=False).ids

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """Raw text; special tokens written in it ("<|im_start|>") are matched as such, as
        transformers and llama.cpp do. `bos` adds BOS only where the checkpoint's config adds
        one to a text (SmolLM2: no)."""
        ids = self._tk.encode(text, add_special_tokens=False).ids
        if bos and self._settings.add_bos and self.bos_id is not None:
            return [self.bos_id, *ids]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Control tokens dropped. Byte runs decode as Python (and sentencepiece) decode bytes:
        each invalid stretch is one U+FFFD and valid bytes around it stay. (tokenizers'
        ByteFallback turns a whole run with one bad byte into U+FFFDs, so text already streamed
        could change afterwards.)"""
        if self._kind == "text":
            return self._tk.decode([i for i in ids if 0 <= i < self._own], skip_special_tokens=True)
        parts: list[str] = []
        run = bytearray()
        for i in ids:
            if self.is_control(i):
                continue
            piece = self._bytes[i]
            if piece is not None:
                run += piece
                continue
            if run:
                parts.append(run.decode("utf-8", errors="replace"))
                run.clear()
            elif not parts and self._strip_space and self._pieces[i].startswith("\u2581"):
                parts.append(self._pieces[i][1:].replace("\u2581", " "))  # the text's prefix space
                continue
            parts.append(self._pieces[i].replace("\u2581", " "))
        if run:
            parts.append(run.decode("utf-8", errors="replace"))
        return "".join(parts)

    def id_to_piece(self, i: int) -> str:
        return self._pieces[i] if 0 <= i < self._own else ""

    def is_control(self, i: int) -> bool:
        return i in self._control or not 0 <= i < self._own

    def control_token(self, name: str) -> int | None:
        token_id = self._tk.token_to_id(name)
        return token_id if token_id is not None and token_id in self._control else None

    # -- bytes, for streaming and grammars ---------------------------------------------------

    def _run_bytes(self, i: int) -> bytes | None:
        if self.is_control(i):
            # Decoding drops control tokens before the byte decoder sees the rest, so a run of
            # bytes goes on across them; a decoder without byte runs has none to continue.
            return b"" if self._kind != "text" else None
        return self._bytes[i]

    def _byte_table(self) -> list[bytes | None]:
        """Per own id: the bytes it adds to a run. Byte-level vocabularies: every token's bytes
        ("Ġhi" is b" hi"; a token may hold part of a character). Sentencepiece-style ones: only
        the byte-fallback pieces "<0xE4>"; other pieces are whole characters and end a run."""
        if self._kind == "byte-level":
            return [byte_level_bytes(piece) for piece in self._pieces]
        table: list[bytes | None] = [None] * self._own
        if self._kind == "sentencepiece":
            for i, value in byte_fallback_pieces(self._pieces, self._control.__contains__).items():
                table[i] = value
        return table

    def _find_stop_ids(self) -> frozenset[int]:
        stops = {self.eos_id, *(i for i in self._settings.extra_stop_ids if 0 <= i < self._own)}
        if self._chat is not None:
            for token in END_OF_TURN_TOKENS:
                token_id = self._tk.token_to_id(token)
                if token_id is not None and token_id in self._control and self._chat.mentions(token):
                    stops.add(token_id)
        return frozenset(stops)


def _restore(tokenizer_json: str, settings: CheckpointSettings) -> CheckpointTokenizer:
    return CheckpointTokenizer(HFTokenizer.from_str(tokenizer_json), settings)


def _decoder_kind(tokenizer: HFTokenizer) -> tuple[str, bool]:
    """(kind, whether decoding drops the space a text was given in front), where kind is
    "byte-level" (GPT-2 style: every token is bytes), "sentencepiece" ("▁" for spaces, "<0xNN>"
    byte fallback) or "text" (pieces are plain text, e.g. WordPiece: tokenizers decodes)."""
    # A decoder pickles as its own JSON; reading it so spares serializing the whole vocabulary.
    decoder = json.loads(tokenizer.decoder.__getstate__()) if tokenizer.decoder is not None else {}
    steps = decoder.get("decoders", []) if decoder.get("type") == "Sequence" else [decoder]
    steps = [step for step in steps if isinstance(step, dict)]
    kinds = {step.get("type") for step in steps}
    if "ByteLevel" in kinds:
        return "byte-level", False
    spm = kinds & {"ByteFallback", "Metaspace"} or any(
        step.get("type") == "Replace" and "\u2581" in json.dumps(step, ensure_ascii=False) for step in steps)
    if not spm:
        return "text", False
    strips = any((step.get("type") == "Strip" and step.get("content") == " " and step.get("start", 0) > 0)
                 or (step.get("type") == "Metaspace" and step.get("prepend_scheme", "always") != "never"
                     and step.get("add_prefix_space", True)) for step in steps)
    return "sentencepiece", strips


def load_tokenizer_json(path: Path) -> HFTokenizer:
    """tokenizer.json as a `tokenizers.Tokenizer`; TokenizerError naming the file."""
    try:
        return HFTokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises plain Exceptions for bad JSON or versions
        raise TokenizerError(f"cannot load tokenizer file {path}: {err}") from None
