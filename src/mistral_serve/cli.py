"""The `mistral-serve` command: serve (default), chat, generate, init."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from .config import ModelConfig, default_data_dir
from .model.args import PRESETS


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="checkpoint folder or Hugging Face hub id (owner/name[@revision]); "
                        "default: the built-in demo model (random weights)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the demo checkpoint and the store live (default ~/.local/share/mistral-serve)")
    p.add_argument("--served-model-name", default=None, help="model id to answer to (default: the catalog id)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def _add_generation_options(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default 0.7)")
    p.add_argument("--max-tokens", type=int, default=max_tokens, help=f"answer length cap (default {max_tokens})")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mistral-serve", description="A self-hosted Mistral 7B inference server.")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="start the HTTP server (default command)")
    _add_model_options(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)

    chat = sub.add_parser("chat", help="interactive chat in the terminal, streaming the answers")
    _add_model_options(chat)
    _add_generation_options(chat, max_tokens=512)

    gen = sub.add_parser("generate", help="print one completion of a prompt")
    _add_model_options(gen)
    _add_generation_options(gen, max_tokens=256)
    gen.add_argument("--prompt", required=True, help="the user message (or raw text with --raw)")
    gen.add_argument("--raw", action="store_true", help="complete the text as is, without the chat template")

    init = sub.add_parser("init", help="write a random checkpoint of a preset shape (for tests and benchmarks)")
    init.add_argument("--preset", required=True, choices=sorted(PRESETS))
    init.add_argument("--out", type=Path, required=True, help="folder to write (created)")
    init.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    init.add_argument("--layout", default="hf", choices=["hf", "mistral"],
                      help="hf: config.json + model*.safetensors; mistral: params.json + consolidated.safetensors")
    init.add_argument("--seed", type=int, default=0)
    bench = sub.add_parser("bench", help="measure the engine on random checkpoints; writes BENCHMARKS.md")
    bench.add_argument("--shapes", default="demo,mistral-1b",
                       help="comma-separated presets to measure; each gets a random checkpoint in "
                            "DATA_DIR/bench (written once) (default demo,mistral-1b)")
    bench.add_argument("--model", action="append", default=[], help="also measure this checkpoint (repeatable)")
    bench.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bench.add_argument("--data-dir", type=Path, default=None)
    bench.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client counts")
    bench.add_argument("--prompt-len", type=int, default=64)
    bench.add_argument("--output-len", type=int, default=32)
    bench.add_argument("--prefix-len", type=int, default=2000)
    bench.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"), help="report file ('-': print only)")
    return parser


def _model_config(ns: argparse.Namespace) -> ModelConfig:
    return ModelConfig(model=ns.model, dtype=ns.dtype, device=ns.device,
                       served_model_name=ns.served_model_name,
                       data_dir=ns.data_dir or default_data_dir())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(ns, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from . import commands  # heavy imports (torch) only once the arguments are known

    try:
        cfg = _model_config(ns) if ns.command in (None, "serve", "chat", "generate") else None
        return commands.run(ns.command, ns, cfg)
    except commands.UserError as err:
        print(f"mistral-serve: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
