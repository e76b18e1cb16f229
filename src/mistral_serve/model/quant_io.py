"""Pre-quantized checkpoints: quantized weights stored as they load, so loading skips the work.

Layout: a Hugging Face-style folder (config.json + model.safetensors or shards) whose config.json
has `"quantization_config": {"quant_method": "mistral-serve", "mode": "int8"|"int4",
"group_size": G}` and whose tensors use this project's own (fused) names:
  int8 layer L:  L.qweight int8 (N, K), L.scale float32 (N,)
  int4 layer L:  L.qweight uint8 (N, K/2) two 4-bit values per byte (even column high),
                 L.scale and L.zero float32 (N, K/G)
  everything else (embeddings, norms): its parameter name, floating point.
transformers refuses such a folder (unknown quant_method) rather than loading it wrongly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import Tensor

from .args import ModelArgs
from .errors import CheckpointError
from .quant import (Int4Linear, Int8Linear, QuantConfig, pack_pairs, quantize_int4, quantize_int8, swap_linears,
                    unpack_pairs)
from .transformer import Transformer

QUANT_METHOD = "mistral-serve"


def stored_quant(config_file: Path) -> QuantConfig | None:
    """The quantization a checkpoint was written with, or None for float weights."""
    try:
        qc = json.loads(config_file.read_text()).get("quantization_config")
    except (OSError, ValueError):
        return None
    if not qc:
        return None
    if qc.get("quant_method") != QUANT_METHOD:
        raise CheckpointError(f"{config_file}: quantization method {qc.get('quant_method')!r} is not supported "
                              f"(only checkpoints written by `mistral-serve init --quantize`)")
    try:
        return QuantConfig(qc.get("mode", ""), int(qc.get("group_size", 32)))
    except ValueError as err:
        raise CheckpointError(f"{config_file}: {err}") from None


def quantized_layers(args: ModelArgs, quant: QuantConfig) -> dict[str, torch.nn.Module]:
    """Module name -> the (meta) quantized layer that stands there, as swap_linears decides."""
    with torch.device("meta"):
        model = Transformer(args)
    swap_linears(model, quant, torch.bfloat16, torch.device("cpu"))
    return {name: m for name, m in model.named_modules() if isinstance(m, (Int8Linear, Int4Linear))}


def quantized_tensors(args: ModelArgs, quant: QuantConfig,
                      params: Iterable[tuple[str, Tensor]]) -> Iterator[tuple[str, Tensor]]:
    """Our float parameters -> the tensors of a pre-quantized checkpoint."""
    layers = quantized_layers(args, quant)
    for name, tensor in params:
        layer = layers.get(name.removesuffix(".weight"))
        if layer is None:
            yield name, tensor
        elif isinstance(layer, Int8Linear):
            q, scale = quantize_int8(tensor)
            yield from ((f"{name[:-7]}.qweight", q), (f"{name[:-7]}.scale", scale))
        else:
            q, scale, zero = quantize_int4(tensor, quant.group_size)
            prefix = name[:-7]
            yield from ((f"{prefix}.qweight", pack_pairs(q)), (f"{prefix}.scale", scale), (f"{prefix}.zero", zero))


def expected(args: ModelArgs, quant: QuantConfig, model: Transformer) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Tensor name -> (shape, must be floating point) for a pre-quantized checkpoint."""
    out: dict[str, tuple[tuple[int, ...], bool]] = {}
    for name, layer in quantized_layers(args, quant).items():
        n, k = layer.out_features, layer.in_features
        if isinstance(layer, Int8Linear):
            out |= {f"{name}.qweight": ((n, k), False), f"{name}.scale": ((n,), True)}
        else:
            g = k // quant.group_size
            out |= {f"{name}.qweight": ((n, k // 2), False), f"{name}.scale": ((n, g), True),
                    f"{name}.zero": ((n, g), True)}
    for name, p in model.named_parameters():
        out[name] = (tuple(p.shape), True)
    return out


def load_prequantized(model: Transformer, files, handles: dict, quant: QuantConfig, dtype: torch.dtype,
                      device: torch.device) -> dict[str, Tensor]:
    """Fill the quantized layers of a meta model (already swapped) from the checkpoint; returns
    the float parameters for load_state_dict."""
    def read(name: str, shape: tuple[int, ...], floating: bool) -> Tensor:
        path = files.weight_map.get(name)
        if path is None:
            raise CheckpointError(f"{files.root}: tensor '{name}' is missing")
        info = handles[path].tensors[name]
        if info.shape != shape or info.dtype.is_floating_point != floating:
            raise CheckpointError(f"{path}: tensor '{name}' is {info.dtype} {list(info.shape)}, expected "
                                  f"{'floating point' if floating else 'integer'} {list(shape)}")
        return handles[path].read(name)

    wanted = expected(model.args, quant, model)
    for name, layer in quantized_layers(model.args, quant).items():
        module = model.get_submodule(name)
        q = read(f"{name}.qweight", *wanted[f"{name}.qweight"]).to(device)
        scale = read(f"{name}.scale", *wanted[f"{name}.scale"]).to(device)
        if isinstance(module, Int8Linear):
            module.set_quantized(q, scale)
        else:
            module.set_quantized(unpack_pairs(q), scale, read(f"{name}.zero", *wanted[f"{name}.zero"]).to(device))
    return {name: read(name, *wanted[name]).to(dtype).to(device) for name, _ in model.named_parameters()}
