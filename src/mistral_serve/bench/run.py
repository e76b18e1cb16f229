"""`mistral-serve bench`: run the benchmarks and write BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import EngineConfig, ModelConfig
from ..engine.engine import LLMEngine
from ..loading import LoadedModel, load
from .engine_bench import prefix_ttft, throughput


@dataclass(frozen=True, slots=True)
class BenchConfig:
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    prompt_len: int = 64
    output_len: int = 32
    prefix_len: int = 2000
    max_num_batched_tokens: int = 512


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}{gpu}")


def engine_section(loaded: LoadedModel, bench: BenchConfig, label: str) -> list[str]:
    lines = [f"### Engine, {label} ({loaded.args.n_params / 1e6:.0f}M parameters, "
             f"{str(loaded.dtype).removeprefix('torch.')} on {loaded.device}, quantization {loaded.card.quantization})", "",
             f"Random prompts of {bench.prompt_len} tokens, {bench.output_len} output tokens each, greedy.", "",
             "| concurrency | output tok/s (whole run) | decode tok/s (all decoding) | speed-up vs 1 |",
             "| --- | --- | --- | --- |"]
    base = None
    for c in bench.concurrency:
        engine = LLMEngine(loaded.model, loaded.tokenizer,
                           EngineConfig(max_num_seqs=max(bench.concurrency),
                                        max_num_batched_tokens=bench.max_num_batched_tokens))
        throughput(engine, 1, 8, 2)  # warm-up
        r = throughput(engine, c, bench.prompt_len, bench.output_len)
        base = base or r.decode_tokens_per_s
        lines.append(f"| {c} | {r.tokens_per_s:.1f} | {r.decode_tokens_per_s:.1f} | "
                     f"{r.decode_tokens_per_s / base:.1f}x |")
        print(lines[-1], file=sys.stderr, flush=True)
    for caching in (True, False):
        engine = LLMEngine(loaded.model, loaded.tokenizer,
                           EngineConfig(max_num_batched_tokens=bench.max_num_batched_tokens,
                                        enable_prefix_caching=caching))
        p = prefix_ttft(engine, bench.prefix_len)
        state = "on" if caching else "off"
        lines += ["", f"Prefix caching {state}: time to first token for a {p.prefix_tokens}-token prefix + 16 new "
                  f"tokens: cold {p.cold_ttft * 1000:.0f} ms, repeated {p.cached_ttft * 1000:.0f} ms "
                  f"({p.cold_ttft / p.cached_ttft:.1f}x; {p.cached_tokens} prompt tokens from the cache)."]
        print(lines[-1], file=sys.stderr, flush=True)
    return lines + [""]


def run_bench(models: list[tuple[str, ModelConfig]], bench: BenchConfig, out: Path | None,
              command: str) -> str:
    sections = ["# Benchmarks", "", f"Machine: {machine_description()}.", "",
                f"Produced by `{command}` on {time.strftime('%Y-%m-%d')}.", ""]
    for label, cfg in models:
        sections += engine_section(load(cfg), bench, label)
    text = "\n".join(sections)
    if out is not None:
        out.write_text(text)
    return text
