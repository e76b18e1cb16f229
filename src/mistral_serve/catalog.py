"""Model cards: how a loaded checkpoint is named and described to API users.

The hosted hub serves Mistral 7B Instruct as `open-mistral-7b`; a checkpoint with the Mistral 7B
shape gets that card. The built-in demo also answers to `open-mistral-7b`, so that the requests on
the hub's model page work against a fresh install, but it is labelled a demo everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .model import ollama
from .model.args import PRESETS, ModelArgs
from .model.hub import looks_like_repo_id

MISTRAL_7B_ID = "open-mistral-7b"


@dataclass(frozen=True, slots=True)
class ModelCard:
    id: str
    display_name: str
    description: str
    summary: str
    parameter_count: int
    context_length: int
    mixture_of_experts: bool = False
    multilingual: str = "Unknown"
    quantization: str = "none"
    developer: str = "Mistral AI"
    demo: bool = False
    chat_template: str = ""  # which template the server applies ("v3", "checkpoint (ChatML)", ...)
    license: str | None = None
    # The hub's `source_model`: the checkpoint the weights came from (a hub id, or a file or
    # folder's name, never its path: the model page is public); None for the demo.
    source_model: str | None = None
    released_at: str | None = None  # ISO 8601, where the model's release is known

    @property
    def parameter_label(self) -> str:
        """Human-readable size: '7 billion', '21 million'."""
        n = self.parameter_count
        if n >= 1e9:
            return f"{round(n / 1e9)} billion"
        return f"{round(n / 1e6)} million"


# Mistral AI's release of Mistral 7B (v0.1; v0.2 and v0.3 keep the shape this card matches).
_MISTRAL_7B_RELEASED = "2023-09-27T00:00:00Z"

_MISTRAL_7B_DESCRIPTION = (
    "Mistral 7B is a 7 billion parameter LLM that excels in general-purpose language tasks, "
    "including text generation, question answering, and code tasks. It balances natural language "
    "and programming performance, comparable to specialised models like CodeLlama 7B.")


def _same_shape(args: ModelArgs, other: ModelArgs) -> bool:
    keys = ("dim", "n_layers", "head_dim", "hidden_dim", "n_heads", "n_kv_heads")
    return all(getattr(args, k) == getattr(other, k) for k in keys)


def _base_name(source: str) -> str:
    """The last part of a folder, file or hub id: what a model without a card of its own is called."""
    return source.rstrip("/").split("/")[-1] or "model"


def _source_name(source: str) -> str:
    """A hub id or `ollama:NAME` as given; a local file or folder by its name alone."""
    if source.startswith(ollama.PREFIX) or (looks_like_repo_id(source) and not Path(source).expanduser().exists()):
        return source
    return _base_name(source)


def _gguf_card(args: ModelArgs, source: str, meta: dict, served_name: str | None, **common) -> ModelCard:
    """A GGUF file describes itself (`general.*` metadata): name, size label, organization, license."""
    stem = _base_name(source).removesuffix(".gguf") or "model"
    name = meta.get("general.name") or stem
    size = meta.get("general.size_label")
    about = meta.get("general.description")
    arch = meta.get("general.architecture", "llama")
    license_ = meta.get("general.license")
    # The file's name, never its path: the model page is public even where the API needs a key.
    description = (f"{about} " if isinstance(about, str) and about else "") + (
        f"{name}{f' ({size})' if size else ''}, a {arch}-architecture model loaded from the GGUF file "
        f"{stem}.gguf{f' (license: {license_})' if license_ else ''}.")
    languages = meta.get("general.languages")
    multilingual = ("Unknown" if not isinstance(languages, list) or not languages
                    else "Yes" if len(languages) > 1 else "No")
    return ModelCard(
        id=served_name or stem.lower(), display_name=str(name), description=description,
        summary=f"{arch}-architecture model{f' ({size})' if size else ''} from a GGUF file",
        developer=str(meta.get("general.organization") or "Unknown"), multilingual=multilingual,
        license=str(license_) if license_ else None, **common)


def card_for(args: ModelArgs, source: str, *, demo: bool = False, quantization: str = "none",
             served_name: str | None = None, metadata: dict | None = None, chat_template: str = "") -> ModelCard:
    """The card of a loaded model. `source` is the folder, file or hub id it came from;
    `metadata` a GGUF file's key-value fields."""
    common = dict(parameter_count=args.n_params, context_length=args.max_seq_len,
                  quantization=quantization, chat_template=chat_template,
                  source_model=None if demo else _source_name(source))
    if metadata is not None and not _same_shape(args, PRESETS["mistral-7b-v0.3"]):
        return _gguf_card(args, source, metadata, served_name, **common)
    if demo:
        return ModelCard(
            id=served_name or MISTRAL_7B_ID,
            display_name="Mistral 7B (demo: tiny random model)",
            description=("Built-in demo: the real Mistral 7B v0.3 tokenizer and chat template on a tiny "
                         "model with random weights. It answers instantly and produces random text; "
                         "start the server with --model to serve real Mistral 7B weights."),
            summary="Demo model with random weights: output is random text", demo=True, **common)
    if _same_shape(args, PRESETS["mistral-7b-v0.3"]):
        return ModelCard(
            id=served_name or MISTRAL_7B_ID, display_name="Mistral 7B",
            description=_MISTRAL_7B_DESCRIPTION, summary="General-purpose open model",
            released_at=_MISTRAL_7B_RELEASED, **common)
    name = _base_name(source)
    return ModelCard(
        id=served_name or name.lower(), display_name=name,
        description=f"A Mistral-architecture model loaded from {source}.",
        summary="Mistral-architecture model", **common)
