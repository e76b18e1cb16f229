"""GGUF checkpoints: hyper-parameters from the metadata, tensors one at a time from the file.

What llama.cpp's converter writes for a Mistral (or any Llama-shaped) model:
- architecture `llama`; `llama.embedding_length`, `llama.block_count`, ... hold the shape;
- tensors `token_embd`, `blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
  ffn_gate, ffn_up, ffn_down}`, `output_norm` and `output` (absent when the output layer is tied
  to the embedding); a tensor's GGUF shape lists the columns first, [K, N] for torch's (N, K);
- the q and k rows permuted from Hugging Face's rotate-half order to interleaved rotary pairs,
  the order Mistral's own `consolidated.safetensors` uses, so `interleaved_to_half` puts them
  back exactly as for that layout.

Types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants Q2_K to Q6_K. Q4_0 and Q4_1
are int4 values with one fp16 scale (and for Q4_1 a minimum) per 32 weights: our int4 layers hold
that exactly (see `q4_blocks`). Every other type is dequantized by the gguf package's own routines
and then kept in floating point or quantized to our int8 / int4.

Tensors are read with plain file reads into a buffer of their own rather than through the memory
map: every page of a map that is touched stays in the process's resident set while the file is
open, which would put the whole file on top of the loaded model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .args import ModelArgs
from .errors import CheckpointError

# The GGUF architectures whose tensors and rope are those of a Mistral model.
ARCHITECTURES = ("llama",)
FLOAT_TYPES = ("F32", "F16", "BF16")
# int4 holds these at about their own size; the rest are kept in int8 when quantized.
FOUR_BIT_TYPES = ("Q4_0", "Q4_1", "Q2_K", "Q3_K", "Q4_K")
EIGHT_BIT_TYPES = ("Q8_0", "Q5_0", "Q5_1", "Q5_K", "Q6_K")
SUPPORTED_TYPES = FLOAT_TYPES + FOUR_BIT_TYPES + EIGHT_BIT_TYPES
EXACT_INT4 = ("Q4_0", "Q4_1")  # our int4 layers (group 32) hold these without re-rounding


def _meta_int(meta: dict[str, Any], key: str, path: Path, default: int | None = None) -> int:
    value = meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{path}: metadata '{key}' must be an integer, got {value!r}")
    return value


def _meta_num(meta: dict[str, Any], key: str, path: Path, default: float) -> float:
    value = meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"{path}: metadata '{key}' must be a number, got {value!r}")
    # GGUF stores float32: 1e-5 comes back as 9.99999974e-06. The shortest decimal that reads
    # back as the same float32 is what the converter was given (config.json's 1e-05).
    return float(str(np.float32(value))) if isinstance(value, float) else float(value)


def read_gguf_args(meta: dict[str, Any], path: Path, tensor_names: set[str]) -> ModelArgs:
    """ModelArgs from a GGUF file's metadata; a file of another architecture is refused by name."""
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{path}: GGUF architecture {arch!r} is not supported "
                              f"(mistral-serve loads {', '.join(map(repr, ARCHITECTURES))}: Mistral and Llama-shaped models)")
    k = f"{arch}."
    scaling = meta.get(k + "rope.scaling.type")
    if scaling not in (None, "none"):
        raise CheckpointError(f"{path}: rope scaling {scaling!r} is not supported")
    dim = _meta_int(meta, k + "embedding_length", path)
    n_heads = _meta_int(meta, k + "attention.head_count", path)
    head_dim = _meta_int(meta, k + "attention.key_length", path, dim // n_heads if n_heads else 0)
    rope_dims = _meta_int(meta, k + "rope.dimension_count", path, head_dim)
    if rope_dims != head_dim:
        raise CheckpointError(f"{path}: partial rotary embeddings ({rope_dims} of {head_dim} dimensions) "
                              "are not supported")
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = _meta_int(meta, k + "vocab_size", path, len(tokens) if isinstance(tokens, list) else None)
    window = meta.get(k + "attention.sliding_window")
    try:
        return ModelArgs(
            dim=dim, n_layers=_meta_int(meta, k + "block_count", path), head_dim=head_dim,
            hidden_dim=_meta_int(meta, k + "feed_forward_length", path), n_heads=n_heads,
            n_kv_heads=_meta_int(meta, k + "attention.head_count_kv", path, n_heads), vocab_size=vocab,
            norm_eps=_meta_num(meta, k + "attention.layer_norm_rms_epsilon", path, 1e-5),
            rope_theta=_meta_num(meta, k + "rope.freq_base", path, 10_000.0),
            sliding_window=window if isinstance(window, int) and window > 0 else None,
            max_seq_len=_meta_int(meta, k + "context_length", path, 4096),
            tie_embeddings="output.weight" not in tensor_names)
    except ValueError as err:
        raise CheckpointError(f"{path}: invalid model configuration: {err}") from None


def file_type_name(meta: dict[str, Any], types: list[str]) -> str:
    """'Q4_K_M', 'Q8_0', 'F16': the file type llama.cpp's quantizer wrote, else the commonest
    type among the matrices."""
    import gguf

    value = meta.get("general.file_type")
    try:
        name = gguf.LlamaFileType(value).name
    except (ValueError, TypeError):
        name = "GUESSED"
    if name != "GUESSED":
        return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    matrices = [t for t in types if t not in FLOAT_TYPES] or types
    return max(set(matrices), key=matrices.count) if matrices else "unknown"


@dataclass(frozen=True, slots=True)
class GGUFTensor:
    name: str
    type: str  # "Q4_K", "F32", ...
    shape: tuple[int, ...]  # torch order: (N, K) for a matrix
    offset: int  # absolute position of the data in the file
    nbytes: int
    raw_shape: tuple[int, ...]  # the stored array's shape (rows, bytes per row for quantized types)
    raw_dtype: np.dtype


class GGUFFile:
    """An open GGUF file: the tensor index from gguf.GGUFReader, data by plain reads."""

    def __init__(self, path: Path, reader, metadata: dict[str, Any]) -> None:
        self.path = Path(path)
        self.metadata = metadata
        size = self.path.stat().st_size
        self.tensors: dict[str, GGUFTensor] = {}
        for t in reader.tensors:
            info = GGUFTensor(t.name, t.tensor_type.name, tuple(int(d) for d in reversed(t.shape)),
                              int(t.data_offset), int(t.n_bytes), tuple(t.data.shape), t.data.dtype)
            if info.offset + info.nbytes > size:
                raise CheckpointError(f"{self.path}: truncated GGUF file: tensor '{t.name}' ends at byte "
                                      f"{info.offset + info.nbytes} of a {size}-byte file")
            self.tensors[t.name] = info
        self._file = self.path.open("rb")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_type(self, name: str) -> None:
        info = self.tensors[name]
        if info.type not in SUPPORTED_TYPES:
            raise CheckpointError(f"{self.path}: tensor '{name}' has type {info.type}, which mistral-serve "
                                  f"does not load (supported: {', '.join(SUPPORTED_TYPES)})")

    def raw(self, name: str) -> np.ndarray:
        """The stored array of one tensor, read into memory of its own."""
        info = self.tensors[name]
        buf = np.empty(info.nbytes, dtype=np.uint8)
        self._file.seek(info.offset)
        if self._file.readinto(memoryview(buf)) != info.nbytes:
            raise CheckpointError(f"{self.path}: truncated GGUF file while reading '{name}'")
        return buf.view(info.raw_dtype).reshape(info.raw_shape)

    def read_float(self, name: str) -> Tensor:
        """A tensor dequantized (by the gguf package) to float32, in torch's shape."""
        import gguf

        self.check_type(name)
        info = self.tensors[name]
        values = gguf.quants.dequantize(self.raw(name), gguf.GGMLQuantizationType[info.type])
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(info.shape)

    def q4_blocks(self, name: str) -> tuple[Tensor, Tensor, Tensor]:
        """A Q4_0 or Q4_1 matrix as our int4 takes it: (q uint8 (N, K) in [0, 15], scale
        float16 (N, K/32), low float16 (N, K/32)) with w = q * scale + low exactly.

        A block is 32 weights: Q4_0 = d (fp16) + 16 bytes, w = (q - 8) * d, so low = -8 * d
        (exact in fp16: a power of two); Q4_1 = d, m (fp16) + 16 bytes, w = q * d + m. Byte j
        holds weight j in its low nibble and weight j + 16 in its high nibble.
        """
        info = self.tensors[name]
        n, k = info.shape
        width = 18 if info.type == "Q4_0" else 20
        blocks = torch.from_numpy(self.raw(name).reshape(n, k // 32, width).copy())
        halves = blocks[..., :width - 16].contiguous().view(torch.float16)  # (N, K/32, 1 or 2)
        scale = halves[..., 0].contiguous()
        low = -8.0 * scale if info.type == "Q4_0" else halves[..., 1].contiguous()
        qs = blocks[..., width - 16:]
        q = torch.cat([qs & 0x0F, qs >> 4], dim=-1).reshape(n, k)
        return q, scale, low.to(torch.float16)


def open_gguf_file(path: Path) -> GGUFFile:
    """Open a GGUF checkpoint: metadata decoded, tensor index checked against the file's size."""
    from .gguf_meta import open_gguf, read_metadata

    reader = open_gguf(path)
    return GGUFFile(path, reader, read_metadata(reader))


def gguf_args(gfile: GGUFFile) -> ModelArgs:
    return read_gguf_args(gfile.metadata, gfile.path, set(gfile.tensors))
