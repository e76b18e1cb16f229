"""Opening a GGUF file and reading its key-value metadata as plain Python values.

GGUF (llama.cpp's format) is a header of typed key-value fields (`general.architecture`,
`llama.block_count`, `tokenizer.ggml.tokens`, ...), a tensor index and the tensor data, aligned.
The `gguf` package (the format's own library) parses it over a read-only memory map; this module
turns its field objects into str / int / float / bool / lists, and its failures into one-line
errors that name the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import CheckpointError

MAGIC = b"GGUF"


def open_gguf(path: Path):
    """A `gguf.GGUFReader` over the file (memory-mapped, read-only)."""
    import gguf

    path = Path(path)
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None
    if magic != MAGIC:
        raise CheckpointError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
    try:
        return gguf.GGUFReader(path, "r")
    except Exception as err:  # numpy and struct errors for a short or corrupt file
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: truncated or corrupt GGUF file ({detail})") from None


def read_metadata(reader) -> dict[str, Any]:
    """Every key-value field of an open GGUF file, decoded.

    Strings are str, numbers int / float, booleans bool, arrays lists of those
    (`tokenizer.ggml.tokens` list[str], `tokenizer.ggml.scores` list[float],
    `tokenizer.ggml.token_type` list[int], `tokenizer.ggml.merges` list[str]). The reader's own
    `GGUF.*` bookkeeping fields (version, counts) are left out.
    """
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            out[key] = field.contents()
        except Exception as err:
            raise CheckpointError(f"{getattr(reader, 'path', 'GGUF file')}: metadata field {key!r} "
                                  f"cannot be read ({err})") from None
    return out


def gguf_metadata(path: Path) -> dict[str, Any]:
    """`read_metadata(open_gguf(path))`."""
    return read_metadata(open_gguf(path))
