"""Command-line options derived from the configuration dataclasses (config.py).

Each configuration field that a user may set carries its help text in the field's metadata
(`option(default, "help")`); `add_options` turns those fields into argparse options with the
dataclass's own default, and `from_options` builds the dataclass back from the parsed namespace.
So a default is written once, in config.py, and the flags cannot drift from it.

Naming: field `max_num_seqs` is `--max-num-seqs`; a bool defaulting to False is a switch
(`--log-content`), one defaulting to True is its negation (`enable_prefix_caching` ->
`--no-prefix-caching`, named in the metadata).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

_TYPES = {"int": int, "float": float, "str": str, "Path": Path}


def option(default: Any, help: str, *, choices: Sequence[str] | None = None, flag: str | None = None,
           env: str | None = None, metavar: str | None = None) -> Any:
    """A dataclass field that is also a command-line option (see the module docstring).

    env: an environment variable that supplies the option's default when set."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "flag": flag, "env": env,
            "metavar": metavar}
    return dataclasses.field(default=default, metadata={"option": meta})


def _flag(field: dataclasses.Field) -> str:
    return field.metadata["option"]["flag"] or "--" + field.name.replace("_", "-")


def _value_type(field: dataclasses.Field) -> type:
    # Annotations are strings here (from __future__ import annotations): "int | None" -> int.
    name = str(field.type).replace(" ", "").replace("|None", "").replace("None|", "")
    return _TYPES[name]


def add_options(parser: argparse.ArgumentParser, cls: type, *, exclude: Sequence[str] = (),
                defaults: dict[str, Any] | None = None) -> None:
    """One option per field of `cls` that has option metadata, except those in `exclude`.

    defaults: overrides of a field's default for this command (e.g. bench measures several
    quantization modes by default)."""
    for field in dataclasses.fields(cls):
        meta = field.metadata.get("option")
        if meta is None or field.name in exclude:
            continue
        default = (defaults or {}).get(field.name, field.default)
        if meta["env"] and os.environ.get(meta["env"]):
            default = os.environ[meta["env"]]
        kwargs: dict[str, Any] = {"dest": field.name, "help": meta["help"]}
        if isinstance(field.default, bool):
            kwargs["action"] = "store_false" if field.default else "store_true"
        elif isinstance(field.default, tuple):  # a list of values: `--flag A B`
            kwargs |= {"default": default, "type": str, "nargs": "+"}
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
        else:
            kwargs |= {"default": default, "type": _value_type(field)}
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
            if default is not None and "(default" not in meta["help"]:
                kwargs["help"] = f"{meta['help']} (default {default})"
        parser.add_argument(_flag(field), **kwargs)


def from_options(ns: argparse.Namespace, cls: type, **values: Any) -> Any:
    """`cls` from the parsed options (those `add_options` declared and the namespace has), with
    `values` for the fields the command line does not set."""
    taken = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)
             if "option" in f.metadata and hasattr(ns, f.name) and f.name not in values}
    taken = {k: tuple(v) if isinstance(v, list) else v for k, v in taken.items()}
    return cls(**taken, **values)
