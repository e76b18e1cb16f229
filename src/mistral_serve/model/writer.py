"""Write checkpoints in either layout, one shard at a time, and make random ones.

Random weights are generated tensor by tensor and written in shards of bounded size, so a full
7B-shape checkpoint can be produced on a machine with less memory than the model in float32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import torch
from safetensors.torch import save_file
from torch import Tensor

from .args import ModelArgs
from .checkpoint import Layout, expected_shapes, half_to_interleaved, parameter_sources
from .quant import QuantConfig
from .quant_io import QUANT_METHOD, quantized_tensors


def random_parameters(args: ModelArgs, seed: int = 0) -> Iterator[tuple[str, Tensor]]:
    """Deterministic random float32 weights, (our parameter name, tensor) in a fixed order."""
    gen = torch.Generator().manual_seed(seed)
    d, q, kv, hd = args.dim, args.n_heads * args.head_dim, args.n_kv_heads * args.head_dim, args.hidden_dim

    def normal(*shape: int, std: float = 0.02) -> Tensor:
        return torch.randn(shape, generator=gen) * std

    def norm_weight() -> Tensor:
        return 1.0 + normal(d, std=0.1)

    yield "tok_embeddings.weight", normal(args.vocab_size, d, std=1.0)
    for i in range(args.n_layers):
        p = f"layers.{i}."
        yield p + "attention_norm.weight", norm_weight()
        yield p + "attention.wqkv.weight", normal(q + 2 * kv, d)
        yield p + "attention.wo.weight", normal(d, q)
        yield p + "ffn_norm.weight", norm_weight()
        yield p + "feed_forward.w13.weight", normal(2 * hd, d)
        yield p + "feed_forward.w2.weight", normal(d, hd)
    yield "norm.weight", norm_weight()
    if not args.tie_embeddings:
        yield "output.weight", normal(args.vocab_size, d)


def _checkpoint_tensors(params: Iterable[tuple[str, Tensor]], layout: Layout,
                        args: ModelArgs) -> Iterator[tuple[str, Tensor]]:
    """Our parameters -> checkpoint tensors: split fused weights, reorder rotary rows."""
    sources = parameter_sources(layout, args)
    shapes = expected_shapes(layout, args)
    for name, tensor in params:
        if name == "output.weight" and args.tie_embeddings:
            continue
        src = sources[name]
        parts = tensor.split([shapes[n][0] for n in src.names]) if len(src.names) > 1 else (tensor,)
        for tensor_name, part in zip(src.names, parts):
            if layout == "mistral" and tensor_name.endswith(("attention.wq.weight", "attention.wk.weight")):
                heads = args.n_heads if tensor_name.endswith("wq.weight") else args.n_kv_heads
                part = half_to_interleaved(part, heads)
            yield tensor_name, part


def config_json(args: ModelArgs, dtype: torch.dtype) -> dict:
    """A Hugging Face `config.json` for MistralForCausalLM."""
    return {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral",
        "hidden_size": args.dim, "intermediate_size": args.hidden_dim,
        "num_hidden_layers": args.n_layers, "num_attention_heads": args.n_heads,
        "num_key_value_heads": args.n_kv_heads, "head_dim": args.head_dim,
        "vocab_size": args.vocab_size, "rms_norm_eps": args.norm_eps, "rope_theta": args.rope_theta,
        "sliding_window": args.sliding_window, "max_position_embeddings": args.max_seq_len,
        "tie_word_embeddings": args.tie_embeddings, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": str(dtype).removeprefix("torch."),
    }


def params_json(args: ModelArgs) -> dict:
    """Mistral's `params.json`."""
    out = {"dim": args.dim, "n_layers": args.n_layers, "head_dim": args.head_dim,
           "hidden_dim": args.hidden_dim, "n_heads": args.n_heads, "n_kv_heads": args.n_kv_heads,
           "norm_eps": args.norm_eps, "vocab_size": args.vocab_size, "rope_theta": args.rope_theta,
           "max_seq_len": args.max_seq_len}
    if args.sliding_window is not None:
        out["sliding_window"] = args.sliding_window
    if args.tie_embeddings:
        out["tied_embeddings"] = True
    return out


def write_checkpoint(out: Path, args: ModelArgs, params: Iterable[tuple[str, Tensor]],
                     layout: Layout = "hf", dtype: torch.dtype = torch.bfloat16,
                     shard_bytes: int = 2 * 1024**3, quant: QuantConfig | None = None) -> list[Path]:
    """Write our parameters as a checkpoint folder of the given layout; returns the weight files.
    With `quant` (int8/int4) the weights are stored pre-quantized (see quant_io.py; hf layout).

    Tensors are buffered until a shard reaches `shard_bytes`, then written and dropped.
    """
    quantized = quant is not None and quant.mode != "none"
    if quantized and layout != "hf":
        raise ValueError("pre-quantized checkpoints use the hf layout")
    out.mkdir(parents=True, exist_ok=True)
    stem = "model" if layout == "hf" else "consolidated"
    written: list[tuple[Path, list[str]]] = []
    current: dict[str, Tensor] = {}
    size = 0

    def flush() -> None:
        nonlocal current, size
        if current:
            tmp = out / f".{stem}-part{len(written)}.safetensors"
            save_file(current, str(tmp), metadata={"format": "pt"})
            tmp.chmod(0o644)  # safetensors writes through a private temporary file (0600)
            written.append((tmp, list(current)))
            current, size = {}, 0

    tensors = quantized_tensors(args, quant, params) if quantized else _checkpoint_tensors(params, layout, args)
    for name, tensor in tensors:
        # Quantized weights and their float32 scales and zeros are stored as they are.
        keep = quantized and name.endswith((".qweight", ".scale", ".zero"))
        tensor = (tensor if keep else tensor.to(dtype)).contiguous()
        current[name] = tensor
        size += tensor.numel() * tensor.element_size()
        if size >= shard_bytes:
            flush()
    flush()
    files = _name_shards(out, stem, written, layout)
    config = config_json(args, dtype) if layout == "hf" else params_json(args)
    if quantized:
        config["quantization_config"] = {"quant_method": QUANT_METHOD, "mode": quant.mode,
                                         "group_size": quant.group_size}
    (out / ("config.json" if layout == "hf" else "params.json")).write_text(json.dumps(config, indent=2) + "\n")
    return files


def _name_shards(out: Path, stem: str, written: list[tuple[Path, list[str]]], layout: Layout) -> list[Path]:
    if len(written) == 1:
        final = out / f"{stem}.safetensors"
        written[0][0].replace(final)
        return [final]
    n = len(written)
    weight_map: dict[str, str] = {}
    files = []
    for i, (tmp, names) in enumerate(written, start=1):
        final = out / f"{stem}-{i:05d}-of-{n:05d}.safetensors"
        tmp.replace(final)
        files.append(final)
        weight_map.update({name: final.name for name in names})
    if layout == "hf":
        index = {"metadata": {}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return files
