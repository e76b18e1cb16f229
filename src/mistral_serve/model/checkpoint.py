"""What a checkpoint folder holds: its layout, its configuration, and where each weight lives.

Three layouts are understood:
- Hugging Face: `config.json` + `model.safetensors` (or shards listed in
  `model.safetensors.index.json`), tensor names like `model.layers.0.self_attn.q_proj.weight`;
- Mistral: `params.json` + `consolidated.safetensors` (or `consolidated-0000N-of-0000M`),
  tensor names like `layers.0.attention.wq.weight`, with q/k rows in interleaved rotary order;
- GGUF: one `.gguf` file (or a folder holding exactly one), metadata and tensors in the file,
  tensor names like `blk.0.attn_q.weight`, q/k rows interleaved as in Mistral's layout (gguf_io.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from torch import Tensor

from .args import ModelArgs
from .errors import CheckpointError
from .safetensors_io import SafetensorsFile

Layout = Literal["hf", "mistral", "gguf"]


@dataclass(frozen=True, slots=True)
class CheckpointFiles:
    root: Path
    layout: Layout
    config_file: Path  # config.json, params.json, or the .gguf file itself
    # tensor name -> the file holding it (empty for GGUF: its index is read with the file)
    weight_map: dict[str, Path]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _hf_weight_map(root: Path) -> dict[str, Path] | None:
    index = root / "model.safetensors.index.json"
    if index.is_file():
        mapping = _read_json(index).get("weight_map")
        if not isinstance(mapping, dict) or not mapping:
            raise CheckpointError(f"{index}: has no 'weight_map'")
        files = {name: root / fname for name, fname in mapping.items()}
        for path in sorted(set(files.values())):
            if not path.is_file():
                raise CheckpointError(f"{path}: shard listed in {index.name} is missing")
        return files
    single = root / "model.safetensors"
    if single.is_file():
        return {name: single for name in _tensor_names(single)}
    return None


def _mistral_weight_map(root: Path) -> dict[str, Path] | None:
    shards = sorted(root.glob("consolidated*.safetensors"))
    if not shards:
        return None
    files: dict[str, Path] = {}
    for shard in shards:
        files.update({name: shard for name in _tensor_names(shard)})
    return files


def _tensor_names(path: Path) -> list[str]:
    with SafetensorsFile(path) as f:
        return list(f.tensors)


def _gguf_files(path: Path) -> CheckpointFiles:
    return CheckpointFiles(path.parent, "gguf", path, {})


def find_checkpoint(root: Path) -> CheckpointFiles:
    """Detect the layout of a local file or folder; prefers the Hugging Face files when a folder
    holds several layouts."""
    if root.is_file():
        if root.suffix.lower() == ".gguf" or _is_gguf(root):
            return _gguf_files(root)
        raise CheckpointError(f"{root}: --model takes a checkpoint folder or a .gguf file; this file is neither")
    if not root.is_dir():
        raise CheckpointError(f"{root}: no such folder")
    ggufs = sorted(p for p in root.glob("*.gguf") if p.is_file())
    has_safetensors = any(root.glob("*.safetensors"))
    if ggufs and not has_safetensors:
        if len(ggufs) > 1:
            raise CheckpointError(f"{root}: holds {len(ggufs)} GGUF files ({', '.join(p.name for p in ggufs)}); "
                                  "pass the one to load as --model FILE.gguf")
        return _gguf_files(ggufs[0])
    if (root / "config.json").is_file():
        weights = _hf_weight_map(root)
        if weights is not None:
            return CheckpointFiles(root, "hf", root / "config.json", weights)
    if (root / "params.json").is_file():
        weights = _mistral_weight_map(root)
        if weights is not None:
            return CheckpointFiles(root, "mistral", root / "params.json", weights)
        raise CheckpointError(f"{root}: has params.json but no consolidated.safetensors")
    if (root / "config.json").is_file():
        raise CheckpointError(f"{root}: has config.json but no model.safetensors "
                              "or model.safetensors.index.json (only safetensors weights are supported)")
    raise CheckpointError(f"{root}: not a checkpoint folder (expected config.json + model.safetensors, "
                          "or params.json + consolidated.safetensors)")


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def _int(cfg: dict, key: str, path: Path, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CheckpointError(f"{path}: '{key}' must be an integer, got {value!r}")
    return value


def _num(cfg: dict, key: str, path: Path, default: float) -> float:
    value = cfg.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise CheckpointError(f"{path}: '{key}' must be a number, got {value!r}")
    return float(value)


def read_args(files: CheckpointFiles) -> ModelArgs:
    path = files.config_file
    if files.layout == "gguf":
        from .gguf_io import gguf_args, open_gguf_file

        with open_gguf_file(path) as gfile:
            return gguf_args(gfile)
    cfg = _read_json(path)
    try:
        if files.layout == "hf":
            arch = cfg.get("architectures") or ["MistralForCausalLM"]
            if not any(a in ("MistralForCausalLM", "LlamaForCausalLM") for a in arch):
                raise CheckpointError(f"{path}: architecture {arch} is not a Mistral model")
            rope = cfg.get("rope_parameters") or {}
            n_heads = _int(cfg, "num_attention_heads", path)
            dim = _int(cfg, "hidden_size", path)
            head_dim = cfg.get("head_dim") or dim // n_heads
            return ModelArgs(
                dim=dim, n_layers=_int(cfg, "num_hidden_layers", path), head_dim=head_dim,
                hidden_dim=_int(cfg, "intermediate_size", path), n_heads=n_heads,
                n_kv_heads=_int(cfg, "num_key_value_heads", path, n_heads),
                vocab_size=_int(cfg, "vocab_size", path),
                norm_eps=_num(cfg, "rms_norm_eps", path, 1e-5),
                rope_theta=_num(rope, "rope_theta", path, _num(cfg, "rope_theta", path, 10_000.0)),
                sliding_window=cfg.get("sliding_window"),
                max_seq_len=_int(cfg, "max_position_embeddings", path, 32768),
                tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            )
        sliding = cfg.get("sliding_window")
        return ModelArgs(
            dim=_int(cfg, "dim", path), n_layers=_int(cfg, "n_layers", path),
            head_dim=_int(cfg, "head_dim", path, _int(cfg, "dim", path) // _int(cfg, "n_heads", path)),
            hidden_dim=_int(cfg, "hidden_dim", path), n_heads=_int(cfg, "n_heads", path),
            n_kv_heads=_int(cfg, "n_kv_heads", path, _int(cfg, "n_heads", path)),
            vocab_size=_int(cfg, "vocab_size", path), norm_eps=_num(cfg, "norm_eps", path, 1e-5),
            rope_theta=_num(cfg, "rope_theta", path, 10_000.0),
            # Mistral's params.json for v0.1 says 4096 but the model was trained with 8k context.
            sliding_window=sliding, max_seq_len=_int(cfg, "max_seq_len", path,
                                                     8192 if sliding else 32768),
            tie_embeddings=bool(cfg.get("tied_embeddings", False)),
        )
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid model configuration: {err}") from None


# ---- tensor names -------------------------------------------------------------------------

def interleaved_to_half(w: Tensor, n_heads: int) -> Tensor:
    """Reorder q/k projection rows from Mistral's interleaved rotary pairs (x0,x1),(x2,x3)...
    to the rotate-half layout (x0,x2,...,x1,x3,...). w (n_heads*D, dim)."""
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def half_to_interleaved(w: Tensor, n_heads: int) -> Tensor:
    """Inverse of `interleaved_to_half` (used when writing a Mistral-layout checkpoint)."""
    rows, cols = w.shape
    return w.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


@dataclass(frozen=True, slots=True)
class Source:
    """How one of our parameters is made: the checkpoint tensors, concatenated along dim 0
    after each is passed through its transform (identity or a rotary reorder)."""

    names: tuple[str, ...]
    transforms: tuple[Callable[[Tensor], Tensor] | None, ...]


def _one(name: str) -> Source:
    return Source((name,), (None,))


def parameter_sources(layout: Layout, args: ModelArgs) -> dict[str, Source]:
    """Our parameter name -> where it comes from in a checkpoint of this layout."""
    if layout == "gguf":
        return _gguf_sources(args)
    hf = layout == "hf"
    out: dict[str, Source] = {
        "tok_embeddings.weight": _one("model.embed_tokens.weight" if hf else "tok_embeddings.weight"),
        "norm.weight": _one("model.norm.weight" if hf else "norm.weight"),
    }
    emb = out["tok_embeddings.weight"]
    out["output.weight"] = emb if args.tie_embeddings else _one("lm_head.weight" if hf else "output.weight")
    to_half_q, to_half_k = (None, None) if hf else _interleaved_qk(args)
    for i in range(args.n_layers):
        ours = f"layers.{i}."
        if hf:
            p = f"model.layers.{i}."
            qkv = (p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight")
            names = {"attention_norm": p + "input_layernorm.weight", "ffn_norm": p + "post_attention_layernorm.weight",
                     "wo": p + "self_attn.o_proj.weight", "w13": (p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"),
                     "w2": p + "mlp.down_proj.weight"}
        else:
            p = ours
            qkv = (p + "attention.wq.weight", p + "attention.wk.weight", p + "attention.wv.weight")
            names = {"attention_norm": p + "attention_norm.weight", "ffn_norm": p + "ffn_norm.weight",
                     "wo": p + "attention.wo.weight", "w13": (p + "feed_forward.w1.weight", p + "feed_forward.w3.weight"),
                     "w2": p + "feed_forward.w2.weight"}
        out[ours + "attention_norm.weight"] = _one(names["attention_norm"])
        out[ours + "ffn_norm.weight"] = _one(names["ffn_norm"])
        out[ours + "attention.wqkv.weight"] = Source(qkv, (to_half_q, to_half_k, None))
        out[ours + "attention.wo.weight"] = _one(names["wo"])
        out[ours + "feed_forward.w13.weight"] = Source(names["w13"], (None, None))
        out[ours + "feed_forward.w2.weight"] = _one(names["w2"])
    return out


def _interleaved_qk(args: ModelArgs) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """The q and k row reorders of a layout that stores rotary pairs interleaved (Mistral, GGUF)."""
    return (lambda w: interleaved_to_half(w, args.n_heads)), (lambda w: interleaved_to_half(w, args.n_kv_heads))


def _gguf_sources(args: ModelArgs) -> dict[str, Source]:
    # llama.cpp's converter stores q/k rows interleaved, as Mistral's own layout does.
    to_half_q, to_half_k = _interleaved_qk(args)
    out = {"tok_embeddings.weight": _one("token_embd.weight"), "norm.weight": _one("output_norm.weight")}
    out["output.weight"] = out["tok_embeddings.weight"] if args.tie_embeddings else _one("output.weight")
    for i in range(args.n_layers):
        ours, b = f"layers.{i}.", f"blk.{i}."
        out[ours + "attention_norm.weight"] = _one(b + "attn_norm.weight")
        out[ours + "ffn_norm.weight"] = _one(b + "ffn_norm.weight")
        out[ours + "attention.wqkv.weight"] = Source(
            (b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"), (to_half_q, to_half_k, None))
        out[ours + "attention.wo.weight"] = _one(b + "attn_output.weight")
        out[ours + "feed_forward.w13.weight"] = Source((b + "ffn_gate.weight", b + "ffn_up.weight"), (None, None))
        out[ours + "feed_forward.w2.weight"] = _one(b + "ffn_down.weight")
    return out


def expected_shapes(layout: Layout, args: ModelArgs) -> dict[str, tuple[int, ...]]:
    """Checkpoint tensor name -> the shape the configuration implies."""
    d, hd, q, kv = args.dim, args.hidden_dim, args.n_heads * args.head_dim, args.n_kv_heads * args.head_dim
    ours = {
        "tok_embeddings.weight": [(args.vocab_size, d)], "norm.weight": [(d,)],
        "output.weight": [(args.vocab_size, d)],
    }
    for i in range(args.n_layers):
        p = f"layers.{i}."
        ours |= {p + "attention_norm.weight": [(d,)], p + "ffn_norm.weight": [(d,)],
                 p + "attention.wqkv.weight": [(q, d), (kv, d), (kv, d)], p + "attention.wo.weight": [(d, q)],
                 p + "feed_forward.w13.weight": [(hd, d), (hd, d)], p + "feed_forward.w2.weight": [(d, hd)]}
    shapes: dict[str, tuple[int, ...]] = {}
    for name, src in parameter_sources(layout, args).items():
        for tensor_name, shape in zip(src.names, ours[name]):
            shapes[tensor_name] = shape
    return shapes
