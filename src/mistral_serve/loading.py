"""From a `--model` argument to a ready model, tokenizer and card."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .catalog import ModelCard, card_for
from .config import ModelConfig
from .model import hub, ollama
from .model.args import ModelArgs
from .model.checkpoint import CheckpointFiles, find_checkpoint, read_args
from .model.errors import CheckpointError
from .model.gguf_io import GGUFFile, gguf_args, open_gguf_file
from .model.gguf_loader import layer_modes, load_gguf_transformer
from .model.hardware import configure_threads, resolve_device, resolve_dtype
from .model.loader import load_transformer
from .model.quant import QuantConfig
from .model.quant_io import stored_quant
from .model.transformer import Transformer
from .random_checkpoint import ensure_demo, is_demo_folder
from .tokenizer import Tokenizer, TokenizerError, load_tokenizer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LoadedModel:
    model: Transformer
    tokenizer: Tokenizer
    args: ModelArgs
    card: ModelCard
    files: CheckpointFiles
    source: str  # what the user passed (or "demo")
    dtype: torch.dtype
    device: torch.device


def resolve_model(ref: str | None, data_dir: Path) -> Path:
    """The demo for None, an existing local folder or file, an Ollama model, else a hub id."""
    if ref is None:
        return ensure_demo(data_dir)
    if ref.startswith(ollama.PREFIX):
        return ollama.resolve(ref)
    path = Path(ref).expanduser()
    if path.exists():
        return path
    if hub.looks_like_repo_id(ref):
        return hub.download(ref)
    raise CheckpointError(f"{ref}: no such file or folder, not an Ollama model (ollama:NAME), "
                          "and not a Hugging Face hub id (owner/name)")


def _tokenizer(files: CheckpointFiles, args: ModelArgs, cfg: ModelConfig, gfile: GGUFFile | None) -> Tokenizer:
    try:
        tok = load_tokenizer(None if gfile else files.root, gguf_path=gfile.path if gfile else None,
                             gguf_meta=gfile.metadata if gfile else None, chat_template=cfg.chat_template,
                             model_vocab_size=args.vocab_size)
    except TokenizerError as err:
        raise CheckpointError(str(err)) from None
    return tok


def _float_params(args: ModelArgs, quantized: bool) -> int:
    """Weights kept in the compute dtype. Quantized matrices are a fraction of the float size
    (only the embedding stays float): fp32 compute fits where it would not otherwise."""
    return args.vocab_size * args.dim if quantized else args.n_params


def _load_weights(files: CheckpointFiles, args: ModelArgs, cfg: ModelConfig, gfile: GGUFFile | None,
                  device: torch.device) -> tuple[Transformer, torch.dtype, str]:
    """The model, its compute dtype, and a label of what its weights are."""
    if gfile is not None:
        quantized = any(m != "none" for m in layer_modes(gfile, args, cfg.quantize).values())
        dtype = resolve_dtype(cfg.dtype, device, _float_params(args, quantized))
        model, label = load_gguf_transformer(gfile, args, dtype, device, cfg.quantize, cfg.group_size,
                                             cfg.cpu_kernels)
        return model, dtype, label
    stored = stored_quant(files.config_file) if files.layout == "hf" else None
    if cfg.quantize in ("auto", "none"):
        if stored is not None and cfg.quantize == "none":
            raise CheckpointError(f"{files.config_file}: the checkpoint is stored quantized ({stored.label}); "
                                  "--quantize none cannot turn it back into float weights (use --quantize auto)")
        # auto: float checkpoints stay float; pre-quantized ones load as written.
        quant = dataclasses.replace(stored, kernels=cfg.cpu_kernels) if stored else QuantConfig(kernels=cfg.cpu_kernels)
    else:
        quant = QuantConfig(cfg.quantize, cfg.group_size, cfg.cpu_kernels)
    dtype = resolve_dtype(cfg.dtype, device, _float_params(args, quant.mode != "none"))
    return load_transformer(files, args, dtype, device, quant), dtype, quant.label


def load(cfg: ModelConfig) -> LoadedModel:
    started = time.monotonic()
    path = resolve_model(cfg.model, cfg.data_dir)
    files = find_checkpoint(path)
    gfile = open_gguf_file(files.config_file) if files.layout == "gguf" else None
    try:
        args = gguf_args(gfile) if gfile else read_args(files)
        tokenizer = _tokenizer(files, args, cfg, gfile)
        device = resolve_device(cfg.device)
        threads = configure_threads()
        model, dtype, label = _load_weights(files, args, cfg, gfile, device)
    finally:
        if gfile is not None:
            gfile.close()
    demo = cfg.model is None or is_demo_folder(files.root)
    card = card_for(args, cfg.model or "demo", demo=demo, served_name=cfg.served_model_name,
                    quantization=label, metadata=gfile.metadata if gfile else None,
                    chat_template=tokenizer.version)
    log.info("loaded %s (%s layout, %.0fM parameters, %s, %s on %s with %d CPU threads, tokenizer %s) in %.1fs",
             path, files.layout, args.n_params / 1e6, label, str(dtype).removeprefix("torch."), device, threads,
             tokenizer.version, time.monotonic() - started)
    return LoadedModel(model, tokenizer, args, card, files, cfg.model or "demo", dtype, device)
