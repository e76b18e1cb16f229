"""What a Hugging Face checkpoint folder says about its tokenizer, besides tokenizer.json.

Files read (each optional):
  tokenizer_config.json     chat_template (a string, or a list of {"name", "template"}: the
                            "default" one is used), bos_token / eos_token / unk_token /
                            pad_token (strings or AddedToken dicts {"content": ...}),
                            add_bos_token
  chat_template.jinja       the template, where newer transformers versions write it (wins)
  chat_template.json        {"chat_template": ...}, as processors save it
  special_tokens_map.json   token strings missing from tokenizer_config.json
  generation_config.json    eos_token_id (an int or a list): the ids generation stops at
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import TokenizerError

TOKENIZER_JSON = "tokenizer.json"
_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")


@dataclass(frozen=True)
class FolderConfig:
    """The tokenizer settings of one folder; empty for a folder without these files."""

    template: str | None = None
    template_origin: Path | None = None
    special_tokens: dict[str, str] = field(default_factory=dict)  # "bos_token" -> "<s>"
    add_bos: bool | None = None
    eos_ids: tuple[int, ...] = ()


def read_folder_config(folder: Path) -> FolderConfig:
    """Read the files above; TokenizerError naming the file for one that is not valid JSON."""
    config = _json(folder / "tokenizer_config.json")
    tokens_map = _json(folder / "special_tokens_map.json")
    generation = _json(folder / "generation_config.json")

    template, origin = _template_from_config(config.get("chat_template")), folder / "tokenizer_config.json"
    processor = _json(folder / "chat_template.json").get("chat_template")
    if isinstance(processor, str):
        template, origin = processor, folder / "chat_template.json"
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        try:
            template, origin = jinja.read_text(encoding="utf-8"), jinja
        except (OSError, UnicodeDecodeError) as err:
            raise TokenizerError(f"cannot read chat template {jinja}: {err}") from None

    special = {}
    for name in _SPECIAL_NAMES:
        text = _token_text(config.get(name)) or _token_text(tokens_map.get(name))
        if text:
            special[name] = text
    add_bos = config.get("add_bos_token")
    eos = generation.get("eos_token_id")
    eos_list = [eos] if isinstance(eos, int) else eos if isinstance(eos, list) else []
    eos_ids = tuple(i for i in eos_list if isinstance(i, int) and not isinstance(i, bool))
    return FolderConfig(template if isinstance(template, str) else None,
                        origin if isinstance(template, str) else None,
                        special, add_bos if isinstance(add_bos, bool) else None, eos_ids)


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenizerError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _template_from_config(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # Several named templates ("default", "tool_use", "rag"): the default one is for chat.
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        chosen = named.get("default")
        return chosen if isinstance(chosen, str) else None
    return None


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None
