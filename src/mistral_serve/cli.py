"""The `mistral-serve` command: serve (default), chat, generate, init."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from .config import BenchConfig, EngineConfig, ModelConfig, RunConfigs, ServerConfig, default_data_dir
from .model.args import PRESETS
from .options import add_options, from_options



def _csv(values) -> str:
    return ",".join(map(str, values))


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the demo checkpoint and the store live (default ~/.local/share/mistral-serve, "
                        "or $MISTRAL_SERVE_DATA_DIR)")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    add_options(p, ModelConfig)
    _add_data_dir(p)
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
    add_options(serve, ServerConfig)
    add_options(serve, EngineConfig)

    keys = sub.add_parser("keys", help="manage API keys (stored as salted hashes in the data dir)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True)
    keys_sub.add_parser("list", help="list keys (names and dates, never the keys)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key: it stops working at the next request")
    revoke.add_argument("name")
    for p in (create, keys_sub.choices["list"], revoke):
        p.add_argument("--data-dir", type=Path, default=None)

    usage = sub.add_parser("usage", help="print token usage per API key and day")
    usage.add_argument("--data-dir", type=Path, default=None)

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
    init.add_argument("--quantize", default="none", choices=["none", "int8", "int4"],
                      help="store the weights pre-quantized (hf layout): loading skips quantization")
    init.add_argument("--group-size", type=int, default=32, choices=[32, 64, 128, 256])
    bench = sub.add_parser("bench", help="measure the engine on random checkpoints; writes BENCHMARKS.md")
    bench.add_argument("--shapes", default="demo,mistral-1b",
                       help="comma-separated presets to measure; each gets a random checkpoint in "
                            "DATA_DIR/bench (written once) (default demo,mistral-1b)")
    bench.add_argument("--model", action="append", default=[], help="also measure this checkpoint (repeatable)")
    bench.add_argument("--quantize", default=None,
                       help="comma-separated modes (auto, none, int8, int4), each measured in turn "
                            "(default: none,int8,int4 for --shapes, auto for --model)")
    add_options(bench, ModelConfig, exclude=("model", "quantize", "served_model_name"))
    bench.add_argument("--data-dir", type=Path, default=None)
    b = BenchConfig()
    bench.add_argument("--concurrency", default=_csv(b.concurrency), help="comma-separated client counts")
    bench.add_argument("--prompt-len", type=int, default=b.prompt_len)
    bench.add_argument("--output-len", type=int, default=b.output_len)
    bench.add_argument("--prefix-len", type=int, default=b.prefix_len, help="shared-prefix TTFT test length (0: skip it)")
    bench.add_argument("--http-clients", default=_csv(b.http_clients), help="comma-separated client counts for the HTTP run")
    bench.add_argument("--peer-batches", default=_csv(b.peer_batches), help="comma-separated batch sizes for the peers")
    bench.add_argument("--roof-prompt-lens", default=_csv(b.roof_prompt_lens),
                       help="comma-separated prompt lengths at which the engine suite times our prefill matmuls "
                            "against the library GEMM ('' skips it)")
    bench.add_argument("--suites", default=_csv(b.suites),
                       help="what to measure: kernels (one int8, int4 or bf16 matmul, ours against stock), "
                            "engine (in-process), grammar (structured-output overhead), "
                            "http (live server), peers (transformers, llama.cpp), "
                            "avx2 (not by default: single stream with our AVX2 build, with PyTorch's stock "
                            "kernels, and llama.cpp built without AVX-512; see --llamacpp-avx2-python)")
    bench.add_argument("--target-step-ms", type=float, default=b.target_step_ms,
                       help="the engine's step-time target for the HTTP suite's server (its --target-step-ms) and "
                            f"the in-process engines; 0 = off (default {b.target_step_ms:g}, the engine's)")
    bench.add_argument("--llamacpp-avx2-python", default=None, metavar="PATH",
                       help="python of a venv holding llama-cpp-python built without AVX-512, for the avx2 suite "
                            "(default: .venv-llamacpp-avx2/bin/python at the repository root: `make llamacpp-avx2`)")
    bench.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"), help="report file ('-': print only)")
    return parser


def build_configs(ns: argparse.Namespace) -> RunConfigs:
    """Every configuration a command runs with, built here from its options and nowhere else."""
    if ns.command not in (None, "serve", "chat", "generate"):
        return RunConfigs()
    data_dir = ns.data_dir or default_data_dir()
    model = from_options(ns, ModelConfig, data_dir=data_dir)
    if ns.command not in (None, "serve"):
        return RunConfigs(model)
    return RunConfigs(model, from_options(ns, ServerConfig, data_dir=data_dir, api_key=ns.api_key or None),
                      from_options(ns, EngineConfig))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    ns = parser.parse_args(argv)
    ns.argv = argv  # the command line as given (the bench report quotes it)
    logging.basicConfig(level=logging.INFO if getattr(ns, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from . import commands  # heavy imports (torch) only once the arguments are known

    try:
        configs = build_configs(ns)
    except ValueError as err:  # a value the options' types let through and the configuration does not
        print(f"mistral-serve: error: {err}", file=sys.stderr)
        return 2
    try:
        return commands.run(ns.command, ns, configs)
    except commands.UserError as err:
        print(f"mistral-serve: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
