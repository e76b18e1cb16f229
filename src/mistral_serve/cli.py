"""The `mistral-serve` command: serve (default), chat, generate, init."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from .config import QUANTIZE_CHOICES, ModelConfig, default_data_dir
from .model.args import PRESETS

_DEFAULTS = dataclasses.fields(ModelConfig)
_DEFAULTS = {f.name: f for f in _DEFAULTS}


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="checkpoint folder, a .gguf file, ollama:NAME[:TAG] (Ollama's local store) or a "
                        "Hugging Face hub id (owner/name[@revision]); default: the built-in demo model "
                        "(random weights)")
    p.add_argument("--chat-template", default=_DEFAULTS["chat_template"].default, metavar="auto|mistral|checkpoint|PATH",
                   help="auto (default): mistral-common for Mistral's own checkpoints, else the checkpoint's "
                        "own Jinja template; mistral; checkpoint; or a file holding a Jinja template")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the demo checkpoint and the store live (default ~/.local/share/mistral-serve)")
    p.add_argument("--served-model-name", default=None, help="model id to answer to (default: the catalog id)")
    _add_quant_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def _add_quant_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantize", default=_DEFAULTS["quantize"].default, choices=list(QUANTIZE_CHOICES),
                   help="weight-only quantization at load time. auto (default): float checkpoints stay "
                        "float, quantized ones (GGUF, pre-quantized) keep about their size; none: float "
                        "weights in the compute dtype, dequantized from any GGUF type; int8; int4")
    p.add_argument("--group-size", type=int, default=32, choices=[32, 64, 128, 256],
                   help="int4 group size (default 32)")
    p.add_argument("--cpu-kernels", default="auto", choices=["auto", "stock"],
                   help="matmuls on CPU (quantized and bf16): auto = our AVX-512 kernels where "
                        "the CPU has them (compiled on first use), else PyTorch's; stock = always PyTorch's")


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("MISTRAL_SERVE_API_KEY"),
                   help="a single static API key (also MISTRAL_SERVE_API_KEY)")
    p.add_argument("--allow-unauthenticated", action="store_true",
                   help="allow listening on a non-loopback address with no API key")
    p.add_argument("--max-queue", type=int, default=128,
                   help="requests allowed to wait beyond the running batch before 429 (default 128)")
    p.add_argument("--default-max-tokens", type=int, default=None,
                   help="cap on generated tokens when a request sets none (default: up to the context end; "
                        "512 for the demo)")
    p.add_argument("--log-content", action="store_true",
                   help="store message content in the generation log (off: only counts and timings)")
    p.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="largest request body (default 4 MiB)")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds a request body may take to arrive in full before 408 (default 30)")
    p.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="seconds running requests get to finish after SIGTERM (default 30)")


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kv-cache-memory", default=None,
                   help="KV cache size: bytes (4GiB, 512MB) or a fraction of free memory (0.5); "
                        "default: 90%% of free GPU memory, or min(4 GiB, half the free RAM) on CPU")
    p.add_argument("--max-num-seqs", type=int, default=64, help="sequences decoded together (default 64)")
    p.add_argument("--max-num-batched-tokens", type=int, default=512,
                   help="tokens computed per engine step, prefill chunks included (default 512)")
    p.add_argument("--block-size", type=int, default=16, help="tokens per KV cache block (default 16)")
    p.add_argument("--no-prefix-caching", action="store_true", help="turn prefix caching off")
    p.add_argument("--max-model-len", type=int, default=None, help="context length cap (default: the model's)")


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
    _add_server_options(serve)
    _add_engine_options(serve)

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
    bench.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bench.add_argument("--quantize", default=None,
                       help="comma-separated modes (auto, none, int8, int4), each measured in turn "
                            "(default: none,int8,int4 for --shapes, auto for --model)")
    bench.add_argument("--group-size", type=int, default=32, choices=[32, 64, 128, 256])
    bench.add_argument("--cpu-kernels", default="auto", choices=["auto", "stock"],
                       help="matmuls on CPU (quantized and bf16): ours where the CPU allows "
                            "(auto) or PyTorch's (stock)")
    bench.add_argument("--data-dir", type=Path, default=None)
    bench.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client counts")
    bench.add_argument("--prompt-len", type=int, default=64)
    bench.add_argument("--output-len", type=int, default=32)
    bench.add_argument("--prefix-len", type=int, default=2000, help="shared-prefix TTFT test length (0: skip it)")
    bench.add_argument("--http-clients", default="1,8,32", help="comma-separated client counts for the HTTP run")
    bench.add_argument("--peer-batches", default="1,8,32", help="comma-separated batch sizes for the peers")
    bench.add_argument("--suites", default="kernels,engine,grammar,http,peers",
                       help="what to measure: kernels (one int8, int4 or bf16 matmul, ours against stock), "
                            "engine (in-process), grammar (structured-output overhead), "
                            "http (live server), peers (transformers, llama.cpp)")
    bench.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"), help="report file ('-': print only)")
    return parser


def _model_config(ns: argparse.Namespace) -> ModelConfig:
    return ModelConfig(model=ns.model, dtype=ns.dtype, device=ns.device,
                       served_model_name=ns.served_model_name,
                       data_dir=ns.data_dir or default_data_dir(), quantize=ns.quantize,
                       group_size=ns.group_size, cpu_kernels=ns.cpu_kernels,
                       chat_template=ns.chat_template)


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
        cfg = _model_config(ns) if ns.command in (None, "serve", "chat", "generate") else None
        return commands.run(ns.command, ns, cfg)
    except commands.UserError as err:
        print(f"mistral-serve: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
