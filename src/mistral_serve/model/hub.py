"""Fetching a checkpoint from the Hugging Face Hub into its standard cache.

Only the files of one layout are downloaded: a repository such as
mistralai/Mistral-7B-Instruct-v0.3 holds the weights twice (Hugging Face shards and Mistral's
consolidated file), and fetching both would double a 14 GB download. `HF_TOKEN`,
`HF_HUB_OFFLINE` and `HF_HOME`/`HF_HUB_CACHE` are honoured by huggingface_hub itself.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .errors import CheckpointError

log = logging.getLogger(__name__)

# mistral-common's files, and a fine-tune's own tokenizer and chat template (Hugging Face files).
TOKENIZER_PATTERNS = ["tokenizer.model*", "*.model.v*", "*tekken*.json", "tokenizer.json", "tokenizer_config.json",
                      "special_tokens_map.json", "chat_template.jinja"]
HF_PATTERNS = ["config.json", "generation_config.json", "model*.safetensors",
               "model.safetensors.index.json", *TOKENIZER_PATTERNS]
MISTRAL_PATTERNS = ["params.json", "consolidated*.safetensors", *TOKENIZER_PATTERNS]

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")


def looks_like_repo_id(ref: str) -> bool:
    return bool(_REPO_ID.match(ref)) and not ref.startswith((".", "/", "~"))


def _choose_patterns(files: list[str]) -> list[str]:
    if "params.json" in files and any(f.startswith("consolidated") and f.endswith(".safetensors") for f in files):
        return MISTRAL_PATTERNS
    if "config.json" in files and any(f.startswith("model") and f.endswith(".safetensors") for f in files):
        return HF_PATTERNS
    raise CheckpointError("the repository has no safetensors weights in a layout mistral-serve reads "
                          "(config.json + model*.safetensors, or params.json + consolidated.safetensors)")


def _cached_patterns(repo_id: str, revision: str | None) -> list[str]:
    """Offline: the layout of the files listed when the repository was first fetched. The cache
    checks a snapshot against that listing, so asking for both layouts would report a cached
    one-layout download as incomplete."""
    from huggingface_hub import get_cached_repo_tree

    try:
        return _choose_patterns([f.path for f in get_cached_repo_tree(repo_id, revision=revision)])
    except Exception:  # no saved listing (an old cache, or a hand-made one): ask for either layout
        return HF_PATTERNS + MISTRAL_PATTERNS


def download(ref: str) -> Path:
    """`owner/name` or `owner/name@revision` -> local snapshot folder."""
    from huggingface_hub import constants, list_repo_files, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    repo_id, _, revision = ref.partition("@")
    revision = revision or None
    offline = constants.HF_HUB_OFFLINE
    try:
        if not offline:
            try:
                patterns = _choose_patterns(list_repo_files(repo_id, revision=revision))
            except (RepositoryNotFoundError, RevisionNotFoundError, CheckpointError):
                raise
            except Exception as err:  # network failures come as httpx, httpx2, ssl or OS errors
                log.warning("cannot reach the Hub (%s); looking in the local cache", err)
                offline = True
        if offline:
            patterns = _cached_patterns(repo_id, revision)
        log.info("fetching %s into the Hugging Face cache%s", ref, " (cached files only)" if offline else "")
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                   local_files_only=offline)
    except CheckpointError:
        raise
    except GatedRepoError:
        raise CheckpointError(f"{ref}: the repository is gated; accept its terms on the Hub and set "
                              "HF_TOKEN to a token of that account") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{ref}: no such model on the Hugging Face Hub (or it is private: "
                              "set HF_TOKEN), and no local folder of that name") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{ref}: revision {revision!r} does not exist") from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{ref}: not in the local Hugging Face cache and the Hub cannot be reached"
            f"{' (HF_HUB_OFFLINE is set)' if constants.HF_HUB_OFFLINE else ''}. Download it where there is network "
            f"(`hf download {repo_id}`) and copy the cache, or pass a local folder with --model") from None
    except Exception as err:  # network failures come in many types (httpx, ssl, OS errors)
        raise CheckpointError(f"{ref}: download failed: {err}. Set HF_HUB_OFFLINE=1 to use the "
                              "local cache, or pass a local folder with --model") from None
    return Path(folder)
