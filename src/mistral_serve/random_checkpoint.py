"""Random checkpoints of any preset shape, and the built-in demo model.

A random checkpoint is a real checkpoint folder (weights, config, the real tokenizer file) whose
weights are deterministic noise: it exercises every code path of loading and serving, and at a
preset's full shape it measures speed, but what it writes is random text.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .model.args import ModelArgs, preset
from .model.checkpoint import Layout
from .model.quant import QuantConfig
from .model.writer import random_parameters, write_checkpoint
from .tokenizer import bundled_tokenizer_file

log = logging.getLogger(__name__)

DEMO_PRESET = "demo"
DEMO_SEED = 20240323
# Bump when the demo's shape, seed or format changes, so old data dirs get a fresh copy.
DEMO_REVISION = 1
DEMO_MARKER = "DEMO-RANDOM-WEIGHTS.txt"

# The tokenizer that goes with each vocabulary size of the Mistral 7B family.
_TOKENIZER_FOR_VOCAB = {32000: "v1", 32768: "v3"}


def tokenizer_version_for(args: ModelArgs) -> str:
    try:
        return _TOKENIZER_FOR_VOCAB[args.vocab_size]
    except KeyError:
        raise ValueError(f"no bundled tokenizer has a vocabulary of {args.vocab_size} tokens "
                         f"(known: {sorted(_TOKENIZER_FOR_VOCAB)})") from None


def write_random_checkpoint(args: ModelArgs, out: Path, *, dtype: torch.dtype = torch.bfloat16,
                            layout: Layout = "hf", seed: int = 0, quant: QuantConfig | None = None) -> Path:
    """Write weights (pre-quantized with `quant`), config and the matching bundled tokenizer."""
    version = tokenizer_version_for(args)
    write_checkpoint(out, args, random_parameters(args, seed), layout=layout, dtype=dtype, quant=quant)
    source = bundled_tokenizer_file(version)
    target = "tokenizer.model" if version == "v1" else f"tokenizer.model.{version}"
    shutil.copyfile(source, out / target)
    return out


def ensure_demo(data_dir: Path) -> Path:
    """The demo checkpoint folder, written on first use. Concurrent first starts are safe: each
    writes into a private temporary folder and the first rename wins."""
    folder = data_dir / f"demo-r{DEMO_REVISION}"
    if (folder / DEMO_MARKER).is_file():
        return folder
    data_dir.mkdir(parents=True, exist_ok=True)
    log.info("writing the demo checkpoint (random weights) to %s", folder)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=data_dir))
    try:
        write_random_checkpoint(preset(DEMO_PRESET), tmp, dtype=torch.float32, seed=DEMO_SEED)
        (tmp / DEMO_MARKER).write_text(
            "This is mistral-serve's demo model: Mistral 7B's tokenizer on a tiny model with random "
            "weights. It produces random text. Delete this folder to have it written again.\n")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / DEMO_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def is_demo_folder(folder: Path) -> bool:
    return (folder / DEMO_MARKER).is_file()
