"""Which tokenizer a checkpoint gets: `load_tokenizer`, the one entry point of the loader.

chat_template="auto" (the default):
  Mistral's own checkpoints get mistral-common (MistralCommonTokenizer): Mistral's `[INST]`
  formats with tool calls, exactly as Mistral encodes them. A checkpoint counts as Mistral's
  when it has no chat template of its own, or an `[INST]` one, and
    - a folder holds a mistral-common file (find_tokenizer_file: tokenizer.model.v3,
      tekken.json, ...), which is then used; or
    - its tokenizer.json / GGUF vocabulary is exactly Mistral's v1 (32000) or v3 (32768)
      sentencepiece vocabulary (the pieces compared with the bundled files; a GGUF may pad with
      unused tokens after them); the bundled file of that version is then used.
  Anything else with a template of its own (a Zephyr fine-tune on Mistral's vocabulary, a GGUF
  with tokenizer.chat_template, SmolLM2) gets a CheckpointTokenizer: its own tokenizer and
  template. Without a template and without Mistral's vocabulary it gets a CheckpointTokenizer
  without a template: raw completions work, chat requests are refused.
chat_template="mistral": mistral-common as above; TokenizerError where the vocabulary is not
  Mistral's. chat_template="checkpoint": the checkpoint's own tokenizer and template;
  TokenizerError where it has no template. Anything else is a PATH: a file with a Jinja template,
  used with the checkpoint's own tokenizer.

The checkpoint's own tokenizer: for a GGUF file its metadata (the folder is not consulted);
for a folder tokenizer.json, else a sentencepiece tokenizer.model(.vN) converted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Tokenizer, TokenizerError
from .checkpoint import CheckpointSettings, CheckpointTokenizer, load_tokenizer_json
from .gguf_vocab import (
    UNUSED,
    gguf_adds_bos,
    gguf_vocab_label,
    sentencepiece_fields,
    tokenizer_from_gguf,
)
from .hf_files import TOKENIZER_JSON, FolderConfig, read_folder_config
from .mistral import MistralCommonTokenizer, bundled_tokenizer_file, find_tokenizer_file

log = logging.getLogger(__name__)

CHAT_TEMPLATE_MODES = ("auto", "mistral", "checkpoint")
# Mistral's sentencepiece vocabularies, by size; a vocabulary of that size is compared piece
# by piece with the bundled file.
_MISTRAL_VOCABULARIES = {32768: "v3", 32000: "v1"}


@dataclass(frozen=True)
class _Checkpoint:
    """What the checkpoint has. `name` is what errors call it (the folder or the GGUF file)."""

    name: Path
    mistral_file: Path | None = None  # a mistral-common file in the folder
    tokenizer_json: Path | None = None
    config: FolderConfig = FolderConfig()
    gguf_meta: dict[str, Any] | None = None

    @property
    def template(self) -> tuple[str, str] | None:
        """(source, origin) of the checkpoint's own chat template."""
        if self.gguf_meta is not None:
            source = self.gguf_meta.get("tokenizer.chat_template")
            return (source, f"{self.name} (tokenizer.chat_template)") if isinstance(source, str) else None
        if self.config.template is not None:
            return self.config.template, str(self.config.template_origin)
        return None


def load_tokenizer(folder: Path | None, *, gguf_path: Path | None = None,
                   gguf_meta: dict[str, Any] | None = None, chat_template: str = "auto",
                   model_vocab_size: int) -> Tokenizer:
    """The tokenizer for a checkpoint folder or a GGUF file (see the module docstring).

    gguf_meta: the GGUF file's metadata if the caller has read it already (else it is read from
    gguf_path). model_vocab_size: the model's embedding rows; a tokenizer with more tokens is a
    TokenizerError naming the file and both sizes, one with fewer is fine (a padded embedding),
    except a Mistral folder's own tokenizer file, which must match exactly.
    """
    checkpoint = _inspect(folder, gguf_path, gguf_meta)
    if chat_template == "auto":
        tokenizer = _auto(checkpoint, model_vocab_size)
    elif chat_template == "mistral":
        tokenizer = _mistral(checkpoint)
        if tokenizer is None:
            raise TokenizerError(f"{checkpoint.name}: --chat-template mistral needs Mistral's own "
                                 "tokenizer (a tokenizer.model.vN or tekken.json file, or Mistral's "
                                 "v1/v3 vocabulary), and this checkpoint's vocabulary is another")
    elif chat_template == "checkpoint":
        own = checkpoint.template
        if own is None:
            raise TokenizerError(f"{checkpoint.name}: --chat-template checkpoint: the checkpoint has "
                                 "no chat template of its own (use auto, mistral or a template file)")
        tokenizer = _own(checkpoint, own, model_vocab_size)
    else:
        tokenizer = _own(checkpoint, _template_file(Path(chat_template)), model_vocab_size,
                         override=True)
    # Fewer tokens than embedding rows is a padded embedding, except where a folder gets
    # mistral-common: Mistral's weights match their tokenizer exactly (v1: 32000, v3: 32768), so
    # there it is the wrong file, and the model would emit ids it cannot decode. (A GGUF may pad
    # Mistral's vocabulary with unused tokens; those files are compared piece by piece.)
    exact = tokenizer.template == "mistral" and checkpoint.gguf_meta is None
    if tokenizer.vocab_size > model_vocab_size or (exact and tokenizer.vocab_size != model_vocab_size):
        only = "only " if tokenizer.vocab_size > model_vocab_size else ""
        raise TokenizerError(f"{tokenizer.path}: the tokenizer has {tokenizer.vocab_size} tokens but "
                             f"the model's vocabulary has {only}{model_vocab_size}: weights and "
                             "tokenizer do not match")
    log.info("tokenizer: %s from %s (chat template: %s)", tokenizer.version, tokenizer.path,
             chat_template)
    return tokenizer


def _inspect(folder: Path | None, gguf_path: Path | None, gguf_meta: dict[str, Any] | None) -> _Checkpoint:
    if gguf_meta is not None or gguf_path is not None:
        if gguf_meta is None:
            from ..model.errors import CheckpointError
            from ..model.gguf_meta import gguf_metadata
            try:
                gguf_meta = gguf_metadata(Path(gguf_path))
            except CheckpointError as err:
                raise TokenizerError(str(err)) from None
        return _Checkpoint(Path(gguf_path) if gguf_path is not None else Path("GGUF file"),
                           gguf_meta=gguf_meta)
    if folder is None:
        raise TokenizerError("load_tokenizer needs a checkpoint folder or a GGUF file")
    folder = Path(folder)
    tokenizer_json = folder / TOKENIZER_JSON
    return _Checkpoint(folder, find_tokenizer_file(folder),
                       tokenizer_json if tokenizer_json.is_file() else None,
                       read_folder_config(folder) if folder.is_dir() else FolderConfig())


def _auto(checkpoint: _Checkpoint, model_vocab_size: int) -> Tokenizer:
    own = checkpoint.template
    mistral_template = own is None or "[INST]" in own[0]
    if mistral_template:
        tokenizer = _mistral(checkpoint)
        if tokenizer is not None:
            return tokenizer
    elif checkpoint.gguf_meta is None and checkpoint.tokenizer_json is None \
            and _is_tekken(checkpoint.mistral_file):
        log.warning("%s: the checkpoint's chat template (%s) needs a tokenizer.json or "
                    "sentencepiece vocabulary; using mistral-common's format for %s instead",
                    checkpoint.name, own[1], checkpoint.mistral_file)
        return MistralCommonTokenizer.from_file(checkpoint.mistral_file)
    return _own(checkpoint, own, model_vocab_size)


def _mistral(checkpoint: _Checkpoint) -> MistralCommonTokenizer | None:
    """mistral-common for this checkpoint, or None where its vocabulary is not Mistral's."""
    if checkpoint.gguf_meta is not None:
        meta = checkpoint.gguf_meta
        if meta.get("tokenizer.ggml.model") != "llama":
            return None
        version = _mistral_version(meta.get("tokenizer.ggml.tokens") or [],
                                   meta.get("tokenizer.ggml.token_type"))
    elif checkpoint.mistral_file is not None:
        return MistralCommonTokenizer.from_file(checkpoint.mistral_file)
    elif checkpoint.tokenizer_json is not None:
        hf = load_tokenizer_json(checkpoint.tokenizer_json)
        vocab = hf.get_vocab(with_added_tokens=True)
        pieces = [""] * (max(vocab.values(), default=-1) + 1)
        for piece, index in vocab.items():
            pieces[index] = piece
        version = _mistral_version(pieces, None)
    else:
        return None
    return MistralCommonTokenizer.from_file(bundled_tokenizer_file(version)) if version else None


def _mistral_version(pieces: Sequence[str], types: Sequence[int] | None) -> str | None:
    """"v1" / "v3" when `pieces` are that vocabulary, followed (in a GGUF) only by unused
    padding tokens; else None."""
    for size, version in _MISTRAL_VOCABULARIES.items():
        if len(pieces) < size or (len(pieces) > size and (
                types is None or any(t != UNUSED for t in types[size:]))):
            continue
        from sentencepiece import SentencePieceProcessor

        sp = SentencePieceProcessor(model_file=str(bundled_tokenizer_file(version)))
        if sp.vocab_size() == size and all(sp.IdToPiece(i) == pieces[i] for i in range(size)):
            return version
    return None


def _own(checkpoint: _Checkpoint, template: tuple[str, str] | None, model_vocab_size: int,
         override: bool = False) -> CheckpointTokenizer:
    """The checkpoint's own tokenizer with `template` ((source, origin), or None)."""
    source, origin = template if template is not None else (None, "")
    common = dict(model_vocab_size=model_vocab_size, template=source, template_origin=origin,
                  template_is_override=override)
    if checkpoint.gguf_meta is not None:
        meta = checkpoint.gguf_meta
        hf = tokenizer_from_gguf(meta, str(checkpoint.name))
        return CheckpointTokenizer(hf, _gguf_settings(meta, hf, checkpoint.name, gguf_vocab_label(meta),
                                                      **common))
    config = checkpoint.config
    if checkpoint.tokenizer_json is not None:
        hf = load_tokenizer_json(checkpoint.tokenizer_json)
        return CheckpointTokenizer(hf, _folder_settings(config, hf, checkpoint.tokenizer_json, **common))
    spm = checkpoint.mistral_file
    if spm is not None and not _is_tekken(spm):
        meta = sentencepiece_fields(spm)
        hf = tokenizer_from_gguf(meta, str(spm))
        settings = _gguf_settings(meta, hf, spm, f"sentencepiece {spm.name}", **common)
        if config.special_tokens or config.add_bos is not None:
            settings = _folder_settings(config, hf, spm, fallback=settings, **common)
        return CheckpointTokenizer(hf, settings)
    if spm is None:
        raise TokenizerError(f"{checkpoint.name}: no tokenizer file (tokenizer.json, tokenizer.model, "
                             "tokenizer.model.vN or tekken.json)")
    raise TokenizerError(f"{checkpoint.name}: a chat template needs the checkpoint's own tokenizer "
                         f"(tokenizer.json or a sentencepiece tokenizer.model), and it has only a "
                         f"tekken file ({spm.name})")


def _gguf_settings(meta: dict[str, Any], hf: Any, path: Path, source: str, **common: Any) -> CheckpointSettings:
    tokens = meta.get("tokenizer.ggml.tokens") or []

    def token_id(key: str) -> int | None:
        value = meta.get(f"tokenizer.ggml.{key}")
        return value if isinstance(value, int) and 0 <= value < len(tokens) else None

    eos, bos = token_id("eos_token_id"), token_id("bos_token_id")
    if eos is None:
        raise TokenizerError(f"{path}: the vocabulary names no end-of-sequence token "
                             "(tokenizer.ggml.eos_token_id)")
    # The template sees the tokens' strings, as transformers gives them to it.
    named = {"bos_token": bos, "eos_token": eos, "unk_token": token_id("unknown_token_id"),
             "pad_token": token_id("padding_token_id")}
    special = {name: tokens[i] for name, i in named.items() if i is not None}
    extra = tuple(i for key in ("eot_token_id", "eom_token_id") if (i := token_id(key)) is not None)
    return CheckpointSettings(path=path, source=source, eos_id=eos, bos_id=bos, add_bos=gguf_adds_bos(meta),
                              special_tokens=special, extra_stop_ids=extra, **common)


def _folder_settings(config: FolderConfig, hf: Any, path: Path,
                     fallback: CheckpointSettings | None = None, **common: Any) -> CheckpointSettings:
    special = dict(fallback.special_tokens if fallback else {}) | config.special_tokens

    def token_id(name: str) -> int | None:
        return hf.token_to_id(special[name]) if name in special else None

    eos = token_id("eos_token")
    if eos is None:
        eos = config.eos_ids[0] if config.eos_ids else fallback.eos_id if fallback else None
    if eos is None:
        raise TokenizerError(f"{path}: the checkpoint names no end-of-sequence token (eos_token in "
                             "tokenizer_config.json or eos_token_id in generation_config.json)")
    bos = token_id("bos_token")
    if bos is None and fallback is not None:
        bos = fallback.bos_id
    add_bos = config.add_bos
    if add_bos is None:
        add_bos = fallback.add_bos if fallback else _post_processor_adds(hf, bos)
    special.setdefault("eos_token", hf.id_to_token(eos) or "")
    return CheckpointSettings(path=path, source=path.name if fallback is None else fallback.source,
                              eos_id=eos, bos_id=bos, add_bos=add_bos, special_tokens=special,
                              extra_stop_ids=config.eos_ids, **common)


def _post_processor_adds(hf: Any, bos: int | None) -> bool:
    """Whether tokenizer.json's own post-processor puts bos in front of a text."""
    if bos is None:
        return False
    ids = hf.encode("a", add_special_tokens=True).ids
    return bool(ids) and ids[0] == bos and hf.encode("a", add_special_tokens=False).ids[:1] != [bos]


def _template_file(path: Path) -> tuple[str, str]:
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except FileNotFoundError:
        raise TokenizerError(f"chat template file {path} does not exist (--chat-template takes "
                             f"{', '.join(CHAT_TEMPLATE_MODES)} or a file)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TokenizerError(f"cannot read chat template file {path}: {err}") from None


def _is_tekken(path: Path | None) -> bool:
    return path is not None and path.suffix == ".json"
