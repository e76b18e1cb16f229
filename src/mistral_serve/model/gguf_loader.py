"""Build a Transformer from a GGUF file, one tensor at a time.

What each layer becomes (`--quantize`):
- auto: a float file stays float; in a quantized file each matrix keeps about its own size:
  4-bit types (Q4_0, Q4_1, Q2_K..Q4_K) become our int4, 5- to 8-bit ones (Q5_*, Q6_K, Q8_0) our
  int8, float ones stay float. A fused layer (q/k/v, gate/up) takes the wider of its parts'
  choices (Q4_K_M stores attn_v in Q6_K next to Q4_K q and k: the layer is int8).
- none: every matrix dequantized into the compute dtype (how a test compares a GGUF file with
  transformers' own dequantized copy);
- int8 / int4: every matrix in that mode.
Q4_0 and Q4_1 matrices that become int4 with group 32 are copied bit for bit (no re-rounding);
everything else is dequantized by the gguf package and then, where asked, quantized again.
Peak memory is the loaded model plus about two float32 copies of the largest matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .args import ModelArgs
from .checkpoint import Source, expected_shapes, parameter_sources
from .errors import CheckpointError
from .gguf_io import EIGHT_BIT_TYPES, EXACT_INT4, FLOAT_TYPES, FOUR_BIT_TYPES, GGUFFile, file_type_name
from .kernels import kernels_for
from .loader import finish_model
from .quant import Int4Linear, Int8Linear, QuantConfig, swap_linears
from .transformer import Transformer

_WIDTH = {"none": 0, "int4": 1, "int8": 2}


def check_tensors(gfile: GGUFFile, args: ModelArgs) -> None:
    """Every tensor the metadata implies is present with the implied shape and a type we load."""
    for name, shape in expected_shapes("gguf", args).items():
        info = gfile.tensors.get(name)
        if info is None:
            raise CheckpointError(f"{gfile.path}: tensor '{name}' is missing")
        if info.shape != shape:
            raise CheckpointError(f"{gfile.path}: tensor '{name}' has shape {list(info.shape)} but the "
                                  f"metadata implies {list(shape)}")
        gfile.check_type(name)


def _auto_mode(types: list[str]) -> str:
    """The mode of a (possibly fused) matrix whose parts are stored in `types`: float only if every
    part is; otherwise the quantized parts decide, int8 if any of them is wider than 4 bits."""
    quantized = [t for t in types if t not in FLOAT_TYPES]
    if not quantized:
        return "none"
    return "int4" if all(t in FOUR_BIT_TYPES for t in quantized) else "int8"


def layer_modes(gfile: GGUFFile, args: ModelArgs, choice: str) -> dict[str, str]:
    """Module name ("layers.0.attention.wqkv", "output") -> none | int8 | int4."""
    quantized_file = any(gfile.tensors[n].type in FOUR_BIT_TYPES + EIGHT_BIT_TYPES
                         for n in gfile.tensors if len(gfile.tensors[n].shape) == 2)
    modes = {}
    for name, src in parameter_sources("gguf", args).items():
        if name in ("tok_embeddings.weight",) or name.endswith("norm.weight"):
            continue
        module = name.removesuffix(".weight")
        if choice != "auto":
            modes[module] = choice
        elif name == "output.weight" and args.tie_embeddings:
            # The embedding is a lookup table; as an output layer it is a matrix like the rest.
            modes[module] = "int8" if quantized_file else "none"
        else:
            modes[module] = _auto_mode([gfile.tensors[n].type for n in src.names])
    return modes


def _fill_float(dest: Tensor, src: Source, gfile: GGUFFile) -> None:
    """Fill dest with the source tensors, dequantized and reordered, stacked along dim 0."""
    row = 0
    for name, transform in zip(src.names, src.transforms):
        t = gfile.read_float(name)
        rows = t.shape[0] if t.dim() > 1 else 0
        part = dest[row:row + rows] if dest.dim() > 1 else dest
        part.copy_(transform(t) if transform else t)
        row += rows


def _set_exact_int4(module: Int4Linear, src: Source, gfile: GGUFFile, device: torch.device) -> None:
    parts = [gfile.q4_blocks(name) for name in src.names]
    fixed = [tuple(transform(x) if transform else x for x in part) for part, transform in zip(parts, src.transforms)]
    q, scale, low = (torch.cat([p[i] for p in fixed]).to(device) for i in range(3))
    module.set_quantized(q, scale, low=low)


def load_gguf_transformer(gfile: GGUFFile, args: ModelArgs, dtype: torch.dtype, device: torch.device,
                          choice: str, group_size: int = 32, kernels: str = "auto") -> tuple[Transformer, str]:
    """The model and a label of what was loaded from what ("int4 + int8 (weight-only), from Q4_K_M").

    choice: auto | none | int8 | int4 (see the module docstring)."""
    check_tensors(gfile, args)
    modes = layer_modes(gfile, args, choice)
    # Each layer's mode comes from `modes`; the config carries the int4 group (32 under auto, so
    # that Q4 blocks stay exact) and the kernel choice.
    quant = QuantConfig(group_size=group_size if choice != "auto" else 32, kernels=kernels)
    with torch.device("meta"):
        model = Transformer(args, kernel_choice=quant.kernels)
    if device.type == "cpu" and model.own_kernels:  # stock: never built nor loaded
        kernels_for(quant.kernels)  # built (once per machine) while loading, not at the first request
    swap_linears(model, quant, dtype, device, modes=lambda name: modes.get(name, "none"))
    shapes = {name: p.shape for name, p in model.named_parameters()}
    state: dict[str, Tensor] = {}
    exact = 0
    for name, src in parameter_sources("gguf", args).items():
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if isinstance(module, Int4Linear) and module.group_size == 32 and all(
                gfile.tensors[n].type in EXACT_INT4 for n in src.names):
            _set_exact_int4(module, src, gfile, device)
            exact += len(src.names)
        elif isinstance(module, (Int8Linear, Int4Linear)):
            rows = sum(gfile.tensors[n].shape[0] for n in src.names)
            dest = torch.empty((rows, module.in_features), dtype=torch.float32)
            _fill_float(dest, src, gfile)
            module.set_weight(dest.to(device))
        elif name == "output.weight" and args.tie_embeddings:
            continue  # finish_model ties it to the embedding
        else:
            dest = torch.empty(shapes[name], dtype=dtype)
            _fill_float(dest, src, gfile)
            state[name] = dest.to(device)
    model = finish_model(model, state, gfile.path, device)
    return model, _label(gfile, model, dtype, exact)


def _label(gfile: GGUFFile, model: Transformer, dtype: torch.dtype, exact: int) -> str:
    """What the matmuls hold, from the layers themselves (int4 mode keeps the output in int8)."""
    types = [t.type for t in gfile.tensors.values() if len(t.shape) == 2]
    source = file_type_name(gfile.metadata, types)
    kinds = {"int4" if isinstance(m, Int4Linear) else "int8" if isinstance(m, Int8Linear) else "none"
             for m in model.modules() if isinstance(m, (Int4Linear, Int8Linear, torch.nn.Linear))}
    used = sorted(kinds, key=_WIDTH.__getitem__)
    ours = " + ".join(str(dtype).removeprefix("torch.") if m == "none" else m for m in used)
    quantized = any(m != "none" for m in used)
    detail = f" (weight-only{', Q4 blocks kept exactly' if exact else ''})" if quantized else ""
    return f"{ours}{detail}, from {source}"

