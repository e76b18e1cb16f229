"""`--model ollama:NAME[:TAG]`: the GGUF file behind a model in Ollama's local store.

Ollama keeps models under `$OLLAMA_MODELS` (default `~/.ollama/models`) as an OCI-style store:
- `manifests/<registry>/<namespace>/<name>/<tag>`: a JSON manifest listing layers, e.g.
  `manifests/registry.ollama.ai/library/mistral/latest`;
- `blobs/sha256-<hex>`: each layer's content, named by its digest. The layer with media type
  `application/vnd.ollama.image.model` is the GGUF file itself; the others (template, params,
  license) are Ollama's own and not needed here: the GGUF carries its chat template too.

Names follow Ollama's rules: `mistral` is `registry.ollama.ai/library/mistral:latest`,
`user/model:tag` is in the `user` namespace, `host/ns/model:tag` names another registry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import CheckpointError

PREFIX = "ollama:"
DEFAULT_REGISTRY = "registry.ollama.ai"
MODEL_LAYER = "application/vnd.ollama.image.model"


def store_root() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def manifest_path(name: str, root: Path) -> Path:
    """The manifest file for an Ollama model name ("mistral", "mistral:7b", "user/m:q4")."""
    base, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:  # no tag, or the colon was a registry's port
        base, tag = name, ""
    parts = [p for p in base.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or (tag and "/" in tag) or len(parts) > 3:
        raise CheckpointError(f"{PREFIX}{name}: not an Ollama model name (examples: ollama:mistral, "
                              "ollama:mistral:7b-instruct-q4_K_M)")
    if len(parts) == 1:
        parts = [DEFAULT_REGISTRY, "library", *parts]
    elif len(parts) == 2:
        parts = [DEFAULT_REGISTRY, *parts]
    return root.joinpath("manifests", *parts, tag or "latest")


def resolve(ref: str) -> Path:
    """`ollama:NAME[:TAG]` -> the GGUF blob path, with errors that say what is missing."""
    name = ref.removeprefix(PREFIX)
    root = store_root()
    manifest = manifest_path(name, root)
    if not manifest.is_file():
        raise CheckpointError(f"{ref}: not in the Ollama store at {root} (no {manifest.relative_to(root)}; "
                              f"`ollama pull {name}` fetches it, and $OLLAMA_MODELS points at another store)")
    try:
        layers = json.loads(manifest.read_text()).get("layers") or []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise CheckpointError(f"{manifest}: not a readable Ollama manifest ({err})") from None
    digests = [layer.get("digest") for layer in layers
               if isinstance(layer, dict) and layer.get("mediaType") == MODEL_LAYER]
    if not digests or not isinstance(digests[0], str) or not digests[0].startswith("sha256:"):
        raise CheckpointError(f"{manifest}: the manifest has no model layer ({MODEL_LAYER})")
    blob = root / "blobs" / digests[0].replace(":", "-")
    if not blob.is_file():
        raise CheckpointError(f"{ref}: the model layer {blob.name} is missing from {root / 'blobs'}")
    return blob
