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
from .model import hub
from .model.args import ModelArgs
from .model.checkpoint import CheckpointFiles, find_checkpoint, read_args
from .model.errors import CheckpointError
from .model.hardware import configure_threads, resolve_device, resolve_dtype
from .model.loader import load_transformer
from .model.quant import QuantConfig
from .model.quant_io import stored_quant
from .model.transformer import Transformer
from .random_checkpoint import ensure_demo, is_demo_folder
from .tokenizer import Tokenizer, TokenizerError, find_tokenizer_file

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


def resolve_folder(ref: str | None, data_dir: Path) -> Path:
    """The demo for None, an existing local folder, else a hub id to download."""
    if ref is None:
        return ensure_demo(data_dir)
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: --model expects a checkpoint folder, not a file")
        return path
    if hub.looks_like_repo_id(ref):
        return hub.download(ref)
    raise CheckpointError(f"{ref}: no such folder, and not a Hugging Face hub id (owner/name)")


def load_tokenizer(root: Path, args: ModelArgs) -> Tokenizer:
    path = find_tokenizer_file(root)
    if path is None:
        raise CheckpointError(f"{root}: no tokenizer file (tokenizer.model.v3, tokenizer.model or tekken.json)")
    try:
        tok = Tokenizer.from_file(path)
    except TokenizerError as err:
        raise CheckpointError(str(err)) from None
    if tok.vocab_size != args.vocab_size:
        raise CheckpointError(f"{path}: the tokenizer has {tok.vocab_size} tokens but the model's "
                              f"vocabulary has {args.vocab_size}: weights and tokenizer do not match")
    return tok


def load(cfg: ModelConfig) -> LoadedModel:
    started = time.monotonic()
    root = resolve_folder(cfg.model, cfg.data_dir)
    files = find_checkpoint(root)
    args = read_args(files)
    tokenizer = load_tokenizer(root, args)
    device = resolve_device(cfg.device)
    threads = configure_threads()
    quant = QuantConfig(cfg.quantize, cfg.group_size, cfg.cpu_kernels)
    stored = stored_quant(files.config_file) if files.layout == "hf" else None
    if stored is not None and cfg.quantize == "none":
        quant = dataclasses.replace(stored, kernels=cfg.cpu_kernels)  # pre-quantized: loads as written
    # Quantized weights are a fraction of the float size: fp32 compute fits where it did not.
    weight_params = args.n_params if quant.mode == "none" else args.vocab_size * args.dim
    dtype = resolve_dtype(cfg.dtype, device, weight_params)
    model = load_transformer(files, args, dtype, device, quant)
    demo = cfg.model is None or is_demo_folder(root)
    card = card_for(args, cfg.model or "demo", demo=demo, served_name=cfg.served_model_name,
                    quantization=quant.label)
    log.info("loaded %s (%s layout, %.0fM parameters, %s on %s with %d CPU threads, tokenizer %s) in %.1fs",
             root, files.layout, args.n_params / 1e6, str(dtype).removeprefix("torch."), device, threads,
             tokenizer.version, time.monotonic() - started)
    return LoadedModel(model, tokenizer, args, card, files, cfg.model or "demo", dtype, device)
