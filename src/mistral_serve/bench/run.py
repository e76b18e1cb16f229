"""`mistral-serve bench`: run the benchmarks and write BENCHMARKS.md (and a throughput plot)."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..config import BenchConfig, EngineConfig, ModelConfig
from ..engine.engine import LLMEngine
from ..engine.runner import kv_bytes_per_block
from ..loading import LoadedModel, load
from ..random_checkpoint import ensure_demo
from .engine_bench import grammar_overhead, prefill_rate, prefix_ttft, throughput
from .machine import machine_record, record_lines
from .roof import DecodeLimit, prefill_roof, read_rate, token_bytes
from .roof_report import decode_limit_lines, prefill_roof_lines
from .summary import Figures, summary_lines


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    # (label, concurrency -> tokens/s) for the plot
    curves: list[tuple[str, dict[int, float]]] = field(default_factory=list)
    # The current model's figures, for its summary table of ratios (ours / peer).
    figures: Figures = field(default_factory=Figures)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        for line in lines:
            if line:
                print(line, file=sys.stderr, flush=True)


def kernels_description(loaded: LoadedModel) -> str:
    from ..model.quant import matmul_kernels

    if loaded.device.type != "cpu":
        return ", matmuls: PyTorch's CUDA kernels"
    module = loaded.model.cpu_kernels()
    isa = getattr(module, "isa", None)
    ops = "PyTorch" if module is None else f"ours ({isa()})" if isa is not None else "ours"
    return f", matmuls: {matmul_kernels(loaded.model)}; RMSNorm and rotary: {ops}"


def _weights_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def engine_section(report: Report, loaded: LoadedModel, bench: BenchConfig, label: str) -> None:
    report.add(f"Random prompts of {bench.prompt_len} tokens, {bench.output_len} output tokens each, greedy.", "",
               "| concurrency | output tok/s (whole run) | decode tok/s (all decoding) | speed-up vs 1 |",
               "| --- | --- | --- | --- |")
    base, curve = None, {}
    for c in bench.concurrency:
        engine = LLMEngine(loaded.model, loaded.tokenizer,
                           EngineConfig(max_num_seqs=max(bench.concurrency),
                                        max_num_batched_tokens=bench.max_num_batched_tokens,
                                        target_step_ms=bench.target_step_ms))
        throughput(engine, 1, 8, 2)  # warm-up
        r = throughput(engine, c, bench.prompt_len, bench.output_len)
        base = base or r.decode_tokens_per_s
        curve[c] = r.decode_tokens_per_s
        report.figures.ours_decode[c] = r.decode_tokens_per_s
        report.add(f"| {c} | {r.tokens_per_s:.1f} | {r.decode_tokens_per_s:.1f} | {r.decode_tokens_per_s / base:.1f}x |")
    report.curves.append((f"engine {label}", curve))
    engine = LLMEngine(loaded.model, loaded.tokenizer, EngineConfig(max_num_batched_tokens=bench.max_num_batched_tokens,
                                                                    target_step_ms=bench.target_step_ms))
    report.figures.ours_prefill = prefill_rate(engine, bench.prompt_len)
    report.add("", f"Prefill: {report.figures.ours_prefill:.1f} prompt tokens/s (one {bench.prompt_len}-token prompt, "
               f"time to its first token).")
    for caching in (True, False) if bench.prefix_len > 0 else ():
        engine = LLMEngine(loaded.model, loaded.tokenizer,
                           EngineConfig(max_num_batched_tokens=bench.max_num_batched_tokens,
                                        target_step_ms=bench.target_step_ms, enable_prefix_caching=caching))
        p = prefix_ttft(engine, bench.prefix_len)
        report.add("", f"Prefix caching {'on' if caching else 'off'}: time to first token for a {p.prefix_tokens}-token "
                   f"prefix + 16 new tokens: cold {p.cold_ttft * 1000:.0f} ms, repeated {p.cached_ttft * 1000:.0f} ms "
                   f"({p.cached_ttft / p.cold_ttft:.1%} of cold; {p.cached_tokens} prompt tokens from the cache).")
        if caching:
            report.figures.cached_ttft_ratio = p.cached_ttft / p.cold_ttft
    report.add("")


def grammar_section(report: Report, loaded: LoadedModel, bench: BenchConfig) -> None:
    """What constrained decoding costs: a JSON schema on every request against none."""
    report.add(f"Structured outputs: every request constrained by a JSON schema (engine/grammar.py, xgrammar), "
               f"against the same requests unconstrained; {bench.output_len} output tokens at most, sampled.", "",
               "| concurrency | unconstrained tok/s | constrained tok/s | ratio | mask per token | schema compile |",
               "| --- | --- | --- | --- | --- | --- |")
    for c in sorted({1, max(bench.concurrency)}):
        engine = LLMEngine(loaded.model, loaded.tokenizer,
                           EngineConfig(max_num_seqs=max(bench.concurrency),
                                        max_num_batched_tokens=bench.max_num_batched_tokens,
                                        target_step_ms=bench.target_step_ms))
        throughput(engine, 1, 8, 2)  # warm-up
        r = grammar_overhead(engine, c, bench.prompt_len, bench.output_len)
        report.add(f"| {c} | {r.plain_tokens_per_s:.1f} | {r.constrained_tokens_per_s:.1f} | "
                   f"{r.constrained_tokens_per_s / r.plain_tokens_per_s:.2f} | {r.mask_ms_per_token:.3f} ms | "
                   f"{r.compile_seconds * 1000:.0f} ms |")
    report.add("", "The mask is computed in a worker thread while the model runs; its time per constrained "
               "token includes planning the ending near max_tokens.", "")


HTTP_TABLE_HEAD = ("| clients | output tok/s | TTFT p50 / p99 | inter-token p50 / p99 | ITL p99 / p50 | errors |",
                   "| --- | --- | --- | --- | --- | --- |")


def http_row(r) -> str:
    """One row of HTTP_TABLE_HEAD's table for an http_bench.HttpResult."""
    spread = "n/a" if math.isnan(r.itl_spread) else f"{r.itl_spread:.2f}x"
    return (f"| {r.clients} | {r.tokens_per_s:.1f} | {r.ttft_p50 * 1000:.0f} / {r.ttft_p99 * 1000:.0f} ms | "
            f"{r.itl_p50 * 1000:.1f} / {r.itl_p99 * 1000:.1f} ms | {spread} | {r.errors} |")


def http_section(report: Report, cfg: ModelConfig, loaded: LoadedModel, bench: BenchConfig, label: str) -> None:
    from .http_bench import LocalServer, run_clients

    args = ["--dtype", cfg.dtype, "--device", cfg.device, "--quantize", cfg.quantize, "--group-size", str(cfg.group_size),
            "--cpu-kernels", cfg.cpu_kernels, "--max-num-seqs", str(max(bench.http_clients)),
            "--target-step-ms", f"{bench.target_step_ms:g}"]
    if cfg.model is not None:
        args += ["--model", cfg.model]
    server = LocalServer.mistral_serve(args, cfg.data_dir)
    try:
        server.wait_ready()
        model_id = server.model_id()
        report.add(f"Through the HTTP server (streaming chat, ~{bench.prompt_len // 2}-word prompts, "
                   f"{bench.output_len} output tokens; the server run with --target-step-ms "
                   f"{bench.target_step_ms:g}{', off' if bench.target_step_ms == 0 else ''}"
                   f"{kernels_description(loaded)}):", "", *HTTP_TABLE_HEAD)
        report.figures.target_step_ms = bench.target_step_ms
        curve = {}
        for clients in bench.http_clients:
            r = asyncio.run(run_clients(server.url, model_id, clients, bench.prompt_len // 2, bench.output_len))
            curve[clients] = r.tokens_per_s
            report.figures.ours_http[clients] = r.tokens_per_s
            report.figures.http_itl_spread[clients] = r.itl_spread
            report.figures.http_ttft_p99[clients] = r.ttft_p99
            report.add(http_row(r))
        report.curves.append((f"http {label}", curve))
        weights = _weights_bytes(loaded.model)
        kv_budget = server.kv_blocks_total() * kv_bytes_per_block(loaded.model, EngineConfig().block_size)
        peak = server.peak_rss()
        report.figures.peak_memory_ratio = peak / (weights + kv_budget)
        report.add("", f"Server peak resident memory {peak / 2**30:.2f} GiB; weights {weights / 2**30:.2f} GiB, "
                   f"KV cache budget {kv_budget / 2**30:.2f} GiB (reserved lazily: only blocks in use are resident); "
                   f"peak / (weights + KV budget) = {report.figures.peak_memory_ratio:.2f}.", "")
    finally:
        server.stop()


# Our quantization mode -> the GGUF type llama.cpp runs against it.
# Our mode -> the GGUF types of llama.cpp's file: its matrices, and its output layer, which our
# int4 mode keeps in int8 (so llama.cpp reads the same bytes for it: Q8_0).
GGUF_FOR_MODE = {"none": ("F16", "F16"), "int8": ("Q8_0", "Q8_0"), "int4": ("Q4_0", "Q8_0")}


def _mode(cfg: ModelConfig) -> str:
    return "none" if cfg.quantize == "auto" else cfg.quantize  # auto: a float checkpoint stays float


def _gguf_path(cfg: ModelConfig, folder: Path, qtype: str, output_qtype: str) -> Path:
    """Where the GGUF export of `folder` in those types is kept (written once, by whichever suite
    needs it first)."""
    suffix = qtype if output_qtype == qtype else f"{qtype}-output-{output_qtype}"
    return cfg.data_dir / "bench" / "gguf" / f"{folder.name}-{suffix}.gguf"


def peers_section(report: Report, cfg: ModelConfig, loaded: LoadedModel, bench: BenchConfig) -> None:
    """transformers (float weights only) and llama.cpp (the GGUF type matching our mode) on the
    same checkpoint, single-stream and batched."""
    from . import llamacpp_peer
    from .gguf_export import export_gguf
    from .transformers_peer import transformers_measure

    if loaded.files.layout == "gguf":
        gguf_peers_section(report, loaded, bench)
        return
    folder = Path(cfg.model) if cfg.model else ensure_demo(cfg.data_dir)
    mode = _mode(cfg)
    qtype, output_qtype = GGUF_FOR_MODE[mode]
    note = "" if output_qtype == qtype else f" (llama.cpp's {qtype} file keeps its output layer in {output_qtype}, as ours in int8)"
    report.add(f"Peers on the same weights{note}:", "", "| system | batch | prefill tok/s | decode tok/s |",
               "| --- | --- | --- | --- |")
    if mode == "none":
        for batch in bench.peer_batches:
            try:
                r = transformers_measure(folder, loaded.dtype, bench.prompt_len, bench.output_len, batch)
                report.figures.transformers_decode[batch] = r["decode_tok_s"]
                if batch == 1:
                    report.figures.transformers_prefill = r["prefill_tok_s"]
                report.add(f"| transformers `generate` ({str(loaded.dtype).removeprefix('torch.')}) | {batch} | "
                           f"{r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.1f} |")
            except Exception as err:  # a peer that cannot run is reported, not fatal
                report.add(f"| transformers | {batch} | failed: {err} | |")
    if not llamacpp_peer.available():
        report.add("| llama.cpp | | not installed (`pip install llama-cpp-python gguf`: compiles, ~20 min) | |", "")
        return
    gguf = _gguf_path(cfg, folder, qtype, output_qtype)
    try:
        if not gguf.is_file():
            gguf.parent.mkdir(parents=True, exist_ok=True)
            export_gguf(folder, gguf, qtype, output_qtype)
        _llamacpp_runs(report, gguf, qtype, bench)
    except Exception as err:
        report.add(f"| llama.cpp {qtype} | | failed: {err} | |")
    report.add("")
    llamacpp_server_section(report, gguf, qtype, bench)


def _llamacpp_runs(report: Report, gguf: Path, qtype: str, bench: BenchConfig) -> None:
    from . import llamacpp_peer

    threads = torch.get_num_threads()
    for batch in bench.peer_batches:
        r = (llamacpp_peer.llamacpp_single_stream(gguf, bench.prompt_len, bench.output_len, threads) if batch == 1
             else llamacpp_peer.llamacpp_batched(gguf, batch, bench.prompt_len, bench.output_len, threads))
        report.figures.llamacpp_decode[batch] = r["decode_tok_s"]
        if batch == 1:
            report.figures.llamacpp_prefill = r["prefill_tok_s"]
        report.figures.llamacpp_type = qtype
        report.add(f"| llama.cpp {qtype} | {batch} | {r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.1f} |")


def gguf_peers_section(report: Report, loaded: LoadedModel, bench: BenchConfig) -> None:
    """A GGUF checkpoint: llama.cpp runs the very same file, and both score the same passage."""
    from . import llamacpp_peer
    from .perplexity import next_token_logprobs, passage, perplexity_of, top1_agreement

    gguf = loaded.files.config_file
    qtype = loaded.card.quantization.rpartition("from ")[2] or "GGUF"
    report.add(f"llama.cpp on the same file ({gguf.name}):", "", "| system | batch | prefill tok/s | decode tok/s |",
               "| --- | --- | --- | --- |")
    if not llamacpp_peer.available():
        report.add("| llama.cpp | | not installed (`pip install llama-cpp-python gguf`: compiles, ~20 min) | |", "")
        return
    try:
        _llamacpp_runs(report, gguf, qtype, bench)
    except Exception as err:
        report.add(f"| llama.cpp {qtype} | | failed: {err} | |")
    ids = loaded.tokenizer.encode(passage())
    ours = next_token_logprobs(loaded.model, ids)
    try:
        theirs = llamacpp_peer.llamacpp_logprobs(gguf, ids, torch.get_num_threads())
        report.add("", f"Perplexity on the bench passage ({len(ids)} tokens, bench/passage.txt): ours "
                   f"{perplexity_of(ours, ids):.3f} ({loaded.card.quantization}), llama.cpp {perplexity_of(theirs, ids):.3f} "
                   f"({qtype}); next-token top-1 agreement {top1_agreement(ours, theirs):.3f}.", "")
    except Exception as err:
        report.add("", f"Perplexity: llama.cpp failed: {err}", "")
    llamacpp_server_section(report, gguf, qtype, bench)


def llamacpp_server_section(report: Report, gguf: Path, qtype: str, bench: BenchConfig) -> None:
    """llama-cpp-python's HTTP server under the same concurrent streaming clients as ours."""
    from .http_bench import LocalServer, run_clients

    try:
        import llama_cpp.server  # noqa: F401  (needs the llama-cpp-python[server] extra)
    except ImportError:
        report.add("llama.cpp server: not installed (`pip install 'llama-cpp-python[server]'`).", "")
        return
    if not gguf.is_file():
        return
    server = LocalServer.llama_cpp(gguf, torch.get_num_threads())
    try:
        server.wait_ready()
        report.add(f"llama-cpp-python's server, {qtype} (it decodes one request at a time):", "", *HTTP_TABLE_HEAD)
        for clients in bench.http_clients:
            r = asyncio.run(run_clients(server.url, "model", clients, bench.prompt_len // 2, bench.output_len))
            report.figures.llamacpp_server[clients] = r.tokens_per_s
            report.add(http_row(r))
        report.add("")
    except Exception as err:
        report.add(f"llama.cpp server {qtype}: failed: {err}", "")
    finally:
        server.stop()


AVX2_REPEATS = 2  # timed runs of each system in the avx2 suite, best of them


def _single_stream(loaded: LoadedModel, bench: BenchConfig) -> tuple[float, float]:
    """Our (prefill, decode) tok/s for one stream, best of AVX2_REPEATS runs each, on an engine
    without prefix caching (every prompt is new anyway; nothing can be served from the cache)."""
    engine = LLMEngine(loaded.model, loaded.tokenizer,
                       EngineConfig(max_num_seqs=1, max_num_batched_tokens=bench.max_num_batched_tokens,
                                    target_step_ms=bench.target_step_ms, enable_prefix_caching=False))
    throughput(engine, 1, 8, 2)  # warm-up
    decode = max(throughput(engine, 1, bench.prompt_len, bench.output_len, seed=i).decode_tokens_per_s
                 for i in range(AVX2_REPEATS))
    prefill = max(prefill_rate(engine, bench.prompt_len, seed=100 + i) for i in range(AVX2_REPEATS))
    return prefill, decode


class OthersCpu:
    """The CPU time other processes took while a measurement ran, in cores: the machine's busy
    time (/proc/stat, all cores) less this process's own and that of its children waited for
    (os.times), over the wall time. Others on the cores skew a single-stream comparison, and
    llama.cpp's most (its threads wait on each other at every op). NaN without /proc/stat."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        import time

        try:
            with open("/proc/stat") as fh:
                values = [int(v) for v in fh.readline().split()[1:9]]  # user .. steal (guest is in user)
            busy = (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait
        except (OSError, ValueError, IndexError):
            return None
        t = os.times()
        return busy, t.user + t.system + t.children_user + t.children_system, time.monotonic()

    def cores(self) -> float:
        end = self._sample()
        if self.start is None or end is None or end[2] <= self.start[2]:
            return math.nan
        others = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return max(0.0, others / (end[2] - self.start[2]))


def _others(cores: float) -> str:
    return "n/a" if math.isnan(cores) else f"{cores:.1f}"


def avx2_section(report: Report, cfg: ModelConfig, loaded: LoadedModel, bench: BenchConfig) -> None:
    """Single stream, prefill and decode: our engine with our AVX2 build and with PyTorch's stock
    kernels (the same checkpoint loaded again with --cpu-kernels avx2 and stock), and llama.cpp built
    without AVX-512 (a subprocess of its own venv, bench/avx2_peer.py) on the same weights, in the
    GGUF types of the peers suite: what an AVX2-only machine gets, measured on this one."""
    from ..model.kernels import cpu_kernels, unavailable_reason

    report.add("AVX2 builds (`--suites avx2`), single stream:", "")
    if loaded.device.type != "cpu":
        report.add(f"Skipped: the model runs on {loaded.device}, the AVX2 builds are CPU code.", "")
        return
    if cpu_kernels("avx2") is None:
        report.add(f"Skipped: our AVX2 build cannot run here ({unavailable_reason('avx2') or 'its build failed'}).", "")
        return
    threads = torch.get_num_threads()
    report.add(f"{bench.prompt_len}-token random prompt, {bench.output_len} output tokens, greedy; {threads} threads "
               f"for every system; best of {AVX2_REPEATS} runs each (prefill: time to the first token of a new "
               f"prompt; decode: the remaining tokens). Last column: the CPU other processes took meanwhile, in "
               f"cores of the {os.cpu_count()} (/proc/stat less this process and its children): above 0 the "
               f"figures are not those of an idle machine, and llama.cpp, whose threads wait on each other at "
               f"every op, suffers most.", "",
               "| system | build | prefill tok/s | decode tok/s | others' CPU |", "| --- | --- | --- | --- | --- |")
    f = report.figures
    for choice, name in (("avx2", "our AVX2 build"), ("stock", "PyTorch's stock kernels")):
        variant = None
        try:
            variant = loaded if cfg.cpu_kernels == choice else load(replace(cfg, cpu_kernels=choice))
            kernels = kernels_description(variant).removeprefix(", ")
            others = OthersCpu()
            prefill, decode = _single_stream(variant, bench)
            cores = others.cores()
            if choice == "avx2":
                f.avx2_prefill, f.avx2_decode = prefill, decode
            else:
                f.stock_prefill, f.stock_decode = prefill, decode
            report.add(f"| ours, --cpu-kernels {choice} | {name} ({kernels}) | {prefill:.1f} | {decode:.1f} | "
                       f"{_others(cores)} |")
        except Exception as err:  # one system that cannot run is reported, not fatal
            report.add(f"| ours, --cpu-kernels {choice} | {name} | failed: {err} | | |")
        finally:
            if variant is not loaded:
                del variant
                gc.collect()
    info = _llamacpp_avx2_row(report, cfg, loaded, bench, threads)
    report.add("")
    if info:
        report.add(f"llama.cpp AVX2 build, its system info (checked: AVX2 = 1, no AVX512): `{info}`.", "")
    ratios = []
    if not (math.isnan(f.avx2_decode) or math.isnan(f.llamacpp_avx2_decode)):
        ratios.append(f"ours AVX2 / llama.cpp AVX2 ({f.llamacpp_avx2_type}): decode "
                      f"**{f.avx2_decode / f.llamacpp_avx2_decode:.2f}x**, prefill "
                      f"**{f.avx2_prefill / f.llamacpp_avx2_prefill:.2f}x**")
    if not (math.isnan(f.avx2_decode) or math.isnan(f.stock_decode)):
        ratios.append(f"ours AVX2 / ours on PyTorch's stock kernels: decode **{f.avx2_decode / f.stock_decode:.2f}x**, "
                      f"prefill **{f.avx2_prefill / f.stock_prefill:.2f}x**")
    if ratios:
        report.add("; ".join(ratios) + ".", "")


def _llamacpp_avx2_row(report: Report, cfg: ModelConfig, loaded: LoadedModel, bench: BenchConfig,
                       threads: int) -> str:
    """The llama.cpp row of the avx2 table (and the how-to line where its venv is missing);
    returns its system info line, or "" where it did not run."""
    from . import avx2_peer
    from .gguf_export import export_gguf

    folder = None  # the checkpoint to export, where llama.cpp does not run the very file we load
    if loaded.files.layout == "gguf":
        gguf = loaded.files.config_file
        qtype = loaded.card.quantization.rpartition("from ")[2] or "GGUF"
        label = f"llama.cpp {qtype} (the same file)"
    else:
        folder = Path(cfg.model) if cfg.model else ensure_demo(cfg.data_dir)
        qtype, output_qtype = GGUF_FOR_MODE[_mode(cfg)]
        gguf = _gguf_path(cfg, folder, qtype, output_qtype)
        label = f"llama.cpp {qtype}" + ("" if output_qtype == qtype else f" (output layer {output_qtype})")
    python, missing = avx2_peer.find_python(bench.llamacpp_avx2_python)
    if python is None:
        report.add(f"| {label} | AVX2, no AVX-512 | not installed | | |", "", missing)
        return ""
    try:
        if folder is not None and not gguf.is_file():
            gguf.parent.mkdir(parents=True, exist_ok=True)
            export_gguf(folder, gguf, qtype, output_qtype)
        others = OthersCpu()
        r = avx2_peer.run_avx2_peer(python, gguf, bench.prompt_len, bench.output_len, threads, repeats=AVX2_REPEATS)
        cores = others.cores()
    except Exception as err:
        report.add(f"| {label} | AVX2, no AVX-512 | failed: {err} | | |")
        return ""
    f = report.figures
    f.llamacpp_avx2_type, f.llamacpp_avx2_prefill, f.llamacpp_avx2_decode = qtype, r.prefill_tok_s, r.decode_tok_s
    report.add(f"| {label} | llama-cpp-python {r.version} built with AVX2 + FMA + F16C, no AVX-512 "
               f"({python.parent.parent.name}) | {r.prefill_tok_s:.1f} | {r.decode_tok_s:.1f} | {_others(cores)} |")
    return r.system_info


def plot(curves: list[tuple[str, dict[int, float]]], out: Path) -> Path | None:
    """One panel per model shape (the part of a label before the first comma after the suite
    name), log-scaled throughput against concurrency."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return None
    shapes: dict[str, list[tuple[str, dict[int, float]]]] = {}
    for label, curve in curves:
        suite, _, rest = label.partition(" ")
        shape, _, detail = rest.partition(", ")
        shapes.setdefault(shape, []).append((f"{suite}: {detail}", curve))
    fig, axes = plt.subplots(1, len(shapes), figsize=(6.5 * len(shapes), 5), squeeze=False)
    for ax, (shape, lines) in zip(axes[0], shapes.items()):
        for label, curve in lines:
            xs = sorted(curve)
            ax.plot(xs, [curve[x] for x in xs], marker="o", label=label,
                    linestyle="-" if label.startswith("engine") else "--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(shape)
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("output tokens / s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("mistral-serve throughput against concurrency\n(engine: decode phase; http: whole run)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def kernels_section(report: Report) -> None:
    from .kernel_bench import kernel_times

    results = kernel_times()
    report.add("## Matmul kernels (CPU)", "")
    if not results:
        from ..model.kernels import unavailable_reason

        report.add(f"Our CPU kernels cannot run here ({unavailable_reason() or 'build failed'}).", "")
        return
    report.add("One matmul, bf16 activations, int4 group 32; best of 8 calls, ours and PyTorch's stock kernels "
               "(for bf16: F.linear, oneDNN) interleaved on the same weights (a matrix that fits the L3 cache "
               "reads partly from it).", "",
               "| weight | mode | activation rows | ours ms | stock ms | stock / ours |", "| --- | --- | --- | --- | --- | --- |")
    for r in results:
        report.add(f"| {r.n}x{r.k} | {r.mode} | {r.rows} | {r.ours_ms:.2f} | {r.stock_ms:.2f} | "
                   f"{r.stock_ms / r.ours_ms:.2f}x |")
    report.add("")


def roof_section(report: Report, loaded: LoadedModel, bench: BenchConfig) -> None:
    """Our prefill and decode against the machine's limits, measured here (see roof.py)."""
    from ..model.quant import Int4Linear, Int8Linear

    quantized = any(isinstance(m, (Int8Linear, Int4Linear)) for m in loaded.model.layers.modules())
    results = [prefill_roof(loaded.model, m, quantized) for m in bench.roof_prompt_lens]
    report.add(*prefill_roof_lines(results))
    for r in results:
        report.figures.prefill_roof[r.ours.m] = r.ratio
        report.figures.roof_kind = r.reference
    decode = report.figures.ours_decode.get(1)
    if decode is None:
        engine = LLMEngine(loaded.model, loaded.tokenizer, EngineConfig(max_num_seqs=1, target_step_ms=bench.target_step_ms))
        throughput(engine, 1, 8, 2)  # warm-up
        decode = throughput(engine, 1, bench.prompt_len, bench.output_len).decode_tokens_per_s
    context = bench.prompt_len + bench.output_len // 2  # the mean context of those decode steps
    need = token_bytes(loaded.model, context, kv_bytes_per_block(loaded.model, 1))
    limit = DecodeLimit(read_rate(device=loaded.device), need, decode)
    report.figures.decode_bandwidth = limit.fraction
    report.add(*decode_limit_lines(limit, context))


def run_bench(models: list[tuple[str, ModelConfig]], bench: BenchConfig, out: Path | None, command: str) -> str:
    report = Report(["# Benchmarks", "", *record_lines(machine_record(command))])
    if "kernels" in bench.suites:
        if models and all(cfg.cpu_kernels == "stock" for _, cfg in models):
            report.add("## Matmul kernels (CPU)", "", "Skipped: `--cpu-kernels stock` builds none of our kernels.", "")
        else:
            kernels_section(report)
    for label, cfg in models:
        loaded = load(cfg)
        full = f"{label}, {str(loaded.dtype).removeprefix('torch.')}, quantization {loaded.card.quantization}"
        report.figures = Figures()
        report.add(f"## {full} ({loaded.args.n_params / 1e6:.0f}M parameters, {loaded.device}"
                   f"{kernels_description(loaded)})", "")
        if "engine" in bench.suites:
            engine_section(report, loaded, bench, full)
            roof_section(report, loaded, bench)
        if "grammar" in bench.suites:
            grammar_section(report, loaded, bench)
        if "http" in bench.suites:
            http_section(report, cfg, loaded, bench, full)
        if "peers" in bench.suites:
            peers_section(report, cfg, loaded, bench)
        if "avx2" in bench.suites:
            avx2_section(report, cfg, loaded, bench)
        report.add(*summary_lines(report.figures))
        del loaded
    if out is not None and report.curves:
        png = plot(report.curves, out.with_suffix(".png"))
        if png is not None:
            report.lines += [f"![throughput against concurrency]({png.name})", ""]
    text = "\n".join(report.lines)
    if out is not None:
        out.write_text(text)
    return text
