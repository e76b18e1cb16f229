"""Build a Transformer from a checkpoint folder, one tensor at a time.

The model is first created on the `meta` device (no memory). Each parameter is then allocated
once in its final dtype and filled straight from the file: a checkpoint tensor already in that
dtype is read into it (into its rows, for the fused q/k/v and gate/up weights) with no copy in
between; one that needs a dtype change or a rotary reorder goes through a single temporary. Peak
memory is the model plus one tensor.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import torch
from torch import Tensor

from .args import ModelArgs
from .checkpoint import CheckpointFiles, Source, expected_shapes, find_checkpoint, parameter_sources, read_args
from .errors import CheckpointError
from .kernels import kernels_for
from .quant import Int4Linear, Int8Linear, QuantConfig, swap_linears
from .quant_io import load_prequantized, stored_quant
from .rope import inv_frequencies
from .safetensors_io import SafetensorsFile
from .transformer import Transformer


def check_tensors(files: CheckpointFiles, args: ModelArgs, handles: dict[Path, SafetensorsFile]) -> None:
    """Every tensor the configuration implies is present, floating point, with the implied shape."""
    for name, shape in expected_shapes(files.layout, args).items():
        path = files.weight_map.get(name)
        if path is None:
            where = "model.safetensors.index.json" if len({*files.weight_map.values()}) > 1 else "the weights"
            raise CheckpointError(f"{files.root}: tensor '{name}' is missing from {where}")
        info = handles[path].tensors.get(name)
        if info is None:
            raise CheckpointError(f"{path}: tensor '{name}' is listed in the index but not in the file")
        if info.shape != shape:
            raise CheckpointError(f"{path}: tensor '{name}' has shape {list(info.shape)} but "
                                  f"{files.config_file.name} implies {list(shape)}")
        if not info.dtype.is_floating_point:
            raise CheckpointError(f"{path}: tensor '{name}' has dtype {info.dtype}, expected floating point")


def _fill(dest: Tensor, src: Source, files: CheckpointFiles, handles: dict[Path, SafetensorsFile]) -> None:
    """Fill dest (CPU) with the source tensors stacked along dim 0."""
    row = 0
    for tensor_name, transform in zip(src.names, src.transforms):
        f = handles[files.weight_map[tensor_name]]
        info = f.tensors[tensor_name]
        part = dest[row:row + info.shape[0]] if dest.dim() > 1 else dest
        if transform is None and info.dtype == dest.dtype:
            f.read_into(tensor_name, part)  # row slices of a contiguous tensor are contiguous
        else:
            t = f.read(tensor_name)
            part.copy_(transform(t) if transform else t)
        row += info.shape[0]


def load_transformer(files: CheckpointFiles, args: ModelArgs, dtype: torch.dtype,
                     device: torch.device, quant: QuantConfig = QuantConfig()) -> Transformer:
    """Quantized layers (see quant.py) are quantized as each weight is read: peak memory is the
    quantized model plus one float32 tensor."""
    stored = stored_quant(files.config_file) if files.layout == "hf" else None
    if stored is not None and stored != quant:
        raise CheckpointError(f"{files.config_file}: the checkpoint is already quantized ({stored.label}); "
                              f"load it without --quantize")
    with torch.device("meta"):
        model = Transformer(args, kernel_choice=quant.kernels)
    if device.type == "cpu" and model.own_kernels:  # stock: never built nor loaded
        kernels_for(quant.kernels)  # built (once per machine) while loading, not at the first request's RMSNorm
    swap_linears(model, quant, dtype, device)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    state: dict[str, Tensor] = {}
    with ExitStack() as stack:
        handles = {path: stack.enter_context(SafetensorsFile(path))
                   for path in sorted(set(files.weight_map.values()))}
        if stored is not None:
            return finish_model(model, load_prequantized(model, files, handles, quant, dtype, device),
                                files.root, device)
        check_tensors(files, args, handles)
        for name, src in parameter_sources(files.layout, args).items():
            if name == "output.weight" and args.tie_embeddings and quant.mode == "none":
                continue
            module = model.get_submodule(name.rsplit(".", 1)[0])
            if isinstance(module, (Int8Linear, Int4Linear)):
                rows = sum(handles[files.weight_map[n]].tensors[n].shape[0] for n in src.names)
                dest = torch.empty((rows, module.in_features), dtype=torch.float32)
                _fill(dest, src, files, handles)
                module.set_weight(dest.to(device))
                continue
            dest = torch.empty(shapes[name], dtype=dtype)
            _fill(dest, src, files, handles)
            state[name] = dest.to(device)
    return finish_model(model, state, files.root, device)


def finish_model(model: Transformer, state: dict[str, Tensor], source: Path, device: torch.device) -> Transformer:
    """Assign the float parameters, tie the output layer if asked, check nothing is missing."""
    args = model.args
    model.load_state_dict(state, strict=False, assign=True)
    if args.tie_embeddings and "output.weight" not in state and not hasattr(model.output, "scale"):
        model.output.weight = model.tok_embeddings.weight
    model.inv_freq = inv_frequencies(args.head_dim, args.rope_theta, device=device)
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_meta:  # cannot happen when check_tensors passed; guards against a silent bad model
            raise CheckpointError(f"{source}: {name} was not loaded")
    return model.eval().requires_grad_(False)


def load_folder(root: Path, dtype: torch.dtype = torch.float32, device: torch.device = torch.device("cpu"),
                quant: QuantConfig | None = None) -> Transformer:
    """quant None: as stored (pre-quantized checkpoints), else float."""
    files = find_checkpoint(root)
    if quant is None:
        quant = (stored_quant(files.config_file) if files.layout == "hf" else None) or QuantConfig()
    return load_transformer(files, read_args(files), dtype, device, quant)
