"""Build a Transformer from a checkpoint folder, one tensor at a time.

The model is first created on the `meta` device (no memory); each weight is then read from the
memory-mapped safetensors file, converted to the compute dtype and moved to the device before the
next is read, so peak memory stays near the size of the model itself.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open

from .args import ModelArgs
from .checkpoint import CheckpointFiles, expected_shapes, find_checkpoint, parameter_sources, read_args
from .errors import CheckpointError
from .rope import inv_frequencies
from .transformer import Transformer


def check_tensors(files: CheckpointFiles, args: ModelArgs, handles: dict[Path, object]) -> None:
    """Every tensor the configuration implies is present with the implied shape."""
    for name, shape in expected_shapes(files.layout, args).items():
        path = files.weight_map.get(name)
        if path is None:
            where = "model.safetensors.index.json" if len({*files.weight_map.values()}) > 1 else "the weights"
            raise CheckpointError(f"{files.root}: tensor '{name}' is missing from {where}")
        actual = tuple(handles[path].get_slice(name).get_shape())
        if actual != shape:
            raise CheckpointError(f"{path}: tensor '{name}' has shape {list(actual)} but "
                                  f"{files.config_file.name} implies {list(shape)}")


def _open_all(files: CheckpointFiles, stack: ExitStack) -> dict[Path, object]:
    handles = {}
    for path in sorted(set(files.weight_map.values())):
        try:
            handles[path] = stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
        except Exception as err:
            raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from None
    return handles


def load_transformer(files: CheckpointFiles, args: ModelArgs, dtype: torch.dtype,
                     device: torch.device) -> Transformer:
    with torch.device("meta"):
        model = Transformer(args)
    state: dict[str, torch.Tensor] = {}
    with ExitStack() as stack:
        handles = _open_all(files, stack)
        check_tensors(files, args, handles)
        for name, src in parameter_sources(files.layout, args).items():
            if name == "output.weight" and args.tie_embeddings:
                continue
            parts = []
            for tensor_name, transform in zip(src.names, src.transforms):
                path = files.weight_map[tensor_name]
                try:
                    t = handles[path].get_tensor(tensor_name)
                except Exception as err:
                    raise CheckpointError(f"{path}: cannot read tensor '{tensor_name}': {err}") from None
                if not t.is_floating_point():
                    raise CheckpointError(f"{path}: tensor '{tensor_name}' has dtype {t.dtype}, expected floating point")
                parts.append((transform(t) if transform else t).to(dtype))
            tensor = torch.cat(parts) if len(parts) > 1 else parts[0]
            state[name] = tensor.to(device)
            del parts, tensor
    model.load_state_dict(state, strict=False, assign=True)
    if args.tie_embeddings:
        model.output.weight = model.tok_embeddings.weight
    model.inv_freq = inv_frequencies(args.head_dim, args.rope_theta, device=device)
    for name, p in model.named_parameters():
        if p.is_meta:  # cannot happen when check_tensors passed; guards against a silent bad model
            raise CheckpointError(f"{files.root}: parameter {name} was not loaded")
    return model.eval().requires_grad_(False)


def load_folder(root: Path, dtype: torch.dtype = torch.float32,
                device: torch.device = torch.device("cpu")) -> Transformer:
    files = find_checkpoint(root)
    return load_transformer(files, read_args(files), dtype, device)
