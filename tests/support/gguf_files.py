"""GGUF files for tests, written with the gguf package from random weights.

`write_gguf` lays a model out as llama.cpp's converter does (architecture "llama", q/k rows in
interleaved rotary order, `output.weight` left out when tied) with each tensor in the type a
callback picks. F32/F16/BF16 and the block-32 types are quantized by gguf itself; the K-quants
(which gguf can read but not write) are random blocks with sane fp16 scales, so a test compares
what we load with gguf's own dequantization of the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as Q

from mistral_serve.bench.gguf_export import add_shape_metadata
from mistral_serve.model.args import ModelArgs
from mistral_serve.model.checkpoint import parameter_sources
from mistral_serve.model.writer import _checkpoint_tensors, random_parameters

# Byte offsets of each K-quant block's fp16 scale fields (ggml-common.h), block of 256 weights.
_K_SCALES = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def random_k_blocks(rows: int, cols: int, qtype: str, seed: int) -> np.ndarray:
    """Random K-quant data (rows, bytes) whose scale fields are small positive fp16 numbers."""
    block, size = gguf.GGML_QUANT_SIZES[Q[qtype]]
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    for at in _K_SCALES[qtype]:
        scales = rng.uniform(1e-3, 4e-3, size=(rows, cols // block)).astype(np.float16)
        data[..., at:at + 2] = scales.view(np.uint8).reshape(rows, cols // block, 2)
    return data.reshape(rows, -1)


def tensors_of(args: ModelArgs, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under their GGUF names (float32, torch shapes). Mistral's layout already has
    q/k rows interleaved, as GGUF does: its tensors are renamed, the loader's own name map read
    backwards (both layouts list the same parts of each parameter in the same order)."""
    to_gguf = {m: g for ours, src in parameter_sources("mistral", args).items()
               for m, g in zip(src.names, parameter_sources("gguf", args)[ours].names)}
    return {to_gguf[n]: t for n, t in _checkpoint_tensors(random_parameters(args, seed), "mistral", args)}


def write_gguf(path: Path, args: ModelArgs, type_of: Callable[[str], str] = lambda name: "F32", *,
               arch: str = "llama", seed: int = 0, metadata: dict | None = None,
               tensors: dict[str, torch.Tensor] | None = None) -> dict[str, np.ndarray]:
    """Write the file; returns each tensor's stored data (for comparing with what was loaded)."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("test model")
    add_shape_metadata(writer, args)
    for key, value in (metadata or {}).items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
    stored = {}
    for i, (name, t) in enumerate((tensors or tensors_of(args, seed)).items()):
        qtype = "F32" if t.dim() == 1 else type_of(name)
        if qtype in _K_SCALES:
            data = random_k_blocks(t.shape[0], t.shape[1], qtype, seed + i)
        elif qtype in ("F32", "F16"):
            data = t.numpy().astype(np.float32 if qtype == "F32" else np.float16)
        else:
            data = gguf.quants.quantize(t.numpy().astype(np.float32), Q[qtype])
        raw = None if qtype in ("F32", "F16") else Q[qtype]
        writer.add_tensor(name, data, raw_dtype=raw)
        stored[name] = data
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return stored
