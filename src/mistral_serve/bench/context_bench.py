"""Decode speed against context length: one sequence's decode step at several contexts (256 and
8192 tokens by default), with decode attention in our paged kernel (kernels/cpu_attention.cpp,
reading the cache's blocks in place) and in the gather path it replaces (index_select into a
padded copy, then SDPA), steps of the two interleaved in one run so both see the same machine.

The context is not prefilled (8k tokens of a 7B prompt take many minutes on 2 cores): the
sequence's KV slots are filled with random values of the cache's dtype, then each timed step is
what the engine runs for a decode: the model's forward for one token at position `context` (its
k/v written to the next slot, keys 0 .. context read) and the output layer for its logits. The
weights are random too, quantized as asked, built in memory (no checkpoint is written).

    python -m mistral_serve.bench.context_bench --shape mistral-7b --quantize int4 --contexts 256,8192
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..model.args import ModelArgs, preset
from ..model.attention import PagedKVCache
from ..model.hardware import configure_threads, resolve_dtype
from ..model.loader import finish_model
from ..model.quant import Int4Linear, Int8Linear, QuantConfig, swap_linears
from ..model.transformer import Transformer
from ..model.writer import random_parameters

# Short names for the presets' shapes: the v0.3 shape has no sliding window, so an 8k context
# really reads 8k keys (v0.1's window of 4096 would cap it).
SHAPES = {"mistral-7b": "mistral-7b-v0.3"}
PATHS = ("kernel", "gather")


def shape_args(name: str) -> ModelArgs:
    return preset(SHAPES.get(name, name))


def random_model(args: ModelArgs, dtype: torch.dtype, quantize: str = "none", group_size: int = 32,
                 seed: int = 0) -> Transformer:
    """A model of random weights (writer.random_parameters), quantized as a checkpoint's would be
    at load time, one tensor at a time: peak memory is the model plus one float32 tensor."""
    device = torch.device("cpu")
    with torch.device("meta"):
        model = Transformer(args)
    swap_linears(model, QuantConfig(quantize, group_size), dtype, device)
    state = {}
    for name, tensor in random_parameters(args, seed):
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if isinstance(module, (Int8Linear, Int4Linear)):
            module.set_weight(tensor)
        else:
            state[name] = tensor.to(dtype)
    return finish_model(model, state, Path("<random weights>"), device)


@dataclass(frozen=True, slots=True)
class ContextResult:
    context: int  # keys each step reads (the new token's position)
    path: str  # "kernel" (cpu_attention.cpp) or "gather" (index_select + SDPA)
    step_ms: tuple[float, ...]  # every timed step

    @property
    def median_ms(self) -> float:
        return statistics.median(self.step_ms)

    @property
    def tokens_per_s(self) -> float:
        return 1000 / self.median_ms


@dataclass
class ContextBench:
    label: str  # shape, dtype, quantization
    results: list[ContextResult] = field(default_factory=list)
    note: str = ""  # why a path is missing, if one is

    def get(self, path: str, context: int) -> ContextResult | None:
        return next((r for r in self.results if r.path == path and r.context == context), None)

    @property
    def contexts(self) -> list[int]:
        return sorted({r.context for r in self.results})

    def ratio(self, path: str) -> float | None:
        """tok/s at the longest context over tok/s at the shortest, for one path."""
        short, long = (self.get(path, c) for c in (self.contexts[0], self.contexts[-1]))
        return long.tokens_per_s / short.tokens_per_s if short and long else None

    def markdown(self) -> list[str]:
        lines = [f"Decode step time against context, {self.label}: one sequence, median of the steps; "
                 "decode attention in our paged kernel and in the gather path, interleaved.", "",
                 "| context | kernel ms | kernel tok/s | gather ms | gather tok/s | kernel / gather |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for c in self.contexts:
            k, g = self.get("kernel", c), self.get("gather", c)
            cells = [f"{r.median_ms:.1f} | {r.tokens_per_s:.2f}" if r else "- | -" for r in (k, g)]
            speed = f"{k.tokens_per_s / g.tokens_per_s:.2f}x" if k and g else "-"
            lines.append(f"| {c} | {cells[0]} | {cells[1]} | {speed} |")
        lines.append("")
        short, long = self.contexts[0], self.contexts[-1]
        for path in PATHS:
            if (r := self.ratio(path)) is not None:
                lines.append(f"- {path}: tok/s at {long} tokens / at {short} = {r:.2f}")
        if self.note:
            lines.append(f"- {self.note}")
        lines.append("")
        return lines


def fill_context(cache: PagedKVCache, slots: int, seed: int = 0) -> None:
    """Random keys and values (unit normal, the cache's dtype) in slots 0 .. slots - 1 of every
    layer, as if a prompt had been prefilled there."""
    gen = torch.Generator().manual_seed(seed)
    for t in (cache.k, cache.v):
        for layer in t:
            layer[:slots].copy_(torch.randn(layer[:slots].shape, generator=gen))


def context_times(model: Transformer, contexts=(256, 8192), steps: int = 8, block_size: int = 16,
                  seed: int = 0) -> tuple[list[ContextResult], str]:
    """Time `steps` decode steps at each context on each path (kernel, when our kernels run here,
    and gather), interleaved: step s of every (context, path) before step s + 1 of any. Returns the
    results and a note saying why the kernel path is missing, if it is."""
    a = model.args
    kernels = model.cpu_kernels()  # the model's --cpu-kernels build, None under stock
    blocks = -(-(max(contexts) + 1) // block_size)
    cache = PagedKVCache(a.n_layers, blocks, block_size, a.n_kv_heads, a.head_dim, a.sliding_window, model.dtype,
                         model.device, kernels)
    note = "" if cache.kernels is not None else "kernel path not measured: our compiled kernels do not run here"
    paths = [p for p in PATHS if p == "gather" or cache.kernels is not None]
    fill_context(cache, blocks * block_size, seed)
    table = list(range(blocks))  # a fresh cache's blocks, in order
    token = torch.tensor([1000], device=model.device)
    own = cache.kernels

    def one_step(context: int, path: str) -> float:
        cache.kernels = own if path == "kernel" else None
        started = time.perf_counter()
        with torch.inference_mode():
            cache.begin_step([(table, context, 1)])
            hidden = model(token, torch.tensor([context], device=model.device), cache)
            model.logits(hidden)
        return (time.perf_counter() - started) * 1000

    times: dict[tuple[int, str], list[float]] = {(c, p): [] for c in contexts for p in paths}
    for c in contexts:  # warm-up: first calls build buffers, page in the weights
        for p in paths:
            one_step(c, p)
    for _ in range(steps):
        for c in contexts:
            for p in paths:
                times[c, p].append(one_step(c, p))
    cache.kernels = own
    return [ContextResult(c, p, tuple(t)) for (c, p), t in times.items()], note


def run(shape: str = "mistral-7b", quantize: str = "int4", contexts=(256, 8192), steps: int = 8,
        dtype: str = "auto", group_size: int = 32, args: ModelArgs | None = None) -> ContextBench:
    """The whole measurement for a preset shape (or `args`): build the model, time, report."""
    args = args or shape_args(shape)
    if max(contexts) >= args.max_seq_len:
        raise ValueError(f"context {max(contexts)} is beyond the shape's {args.max_seq_len} tokens")
    configure_threads()
    device = torch.device("cpu")
    quantized = quantize != "none"
    compute = resolve_dtype(dtype, device, args.vocab_size * args.dim if quantized else args.n_params)
    model = random_model(args, compute, quantize, group_size)
    results, note = context_times(model, contexts, steps)
    mode = "none" if not quantized else QuantConfig(quantize, group_size).label
    label = (f"{shape} shape ({args.n_params / 1e9:.2f}B), {str(compute).removeprefix('torch.')} "
             f"(KV cache too), quantization {mode}, {torch.get_num_threads()} threads")
    return ContextBench(label, results, note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mistral_serve.bench.context_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="mistral-7b", help=f"a preset ({', '.join(SHAPES)} or a preset name)")
    parser.add_argument("--quantize", default="int4", choices=["none", "int8", "int4"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--contexts", default="256,8192", help="comma-separated context lengths")
    parser.add_argument("--steps", type=int, default=8, help="timed decode steps per context and path")
    ns = parser.parse_args(argv)
    contexts = tuple(int(c) for c in ns.contexts.split(","))
    bench = run(ns.shape, ns.quantize, contexts, ns.steps, ns.dtype)
    print("\n".join(bench.markdown()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
