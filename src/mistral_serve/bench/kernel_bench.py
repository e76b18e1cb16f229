"""Kernel benchmark: one matmul (int8, int4, bf16) in every build of our CPU kernels this CPU runs
(AVX-512 and AVX2 on an AVX-512 CPU, AVX2 alone on others) and in PyTorch's stock kernels, on the
same weights, calls interleaved so that all see the same machine."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

# The Mistral 7B MLP weight, the 1B shape's MLP up (gate and up fused) and down weights.
SHAPES = ((14336, 4096), (14336, 2048), (2048, 7168))
ROWS = (1, 8, 512)  # one decode stream, a batch of them, a prefill chunk
LABELS = {"avx512": "AVX-512", "avx2": "AVX2"}


@dataclass(frozen=True, slots=True)
class KernelResult:
    mode: str
    n: int
    k: int
    rows: int
    ours_ms: float  # the build this CPU runs by default
    stock_ms: float
    builds_ms: tuple[tuple[str, float], ...] = ()  # (variant, ms) for every build that runs here

    @property
    def weight_bytes(self) -> int:
        """What one call reads of the weights in our format (int4: 20 bytes per group of 32)."""
        per_row = {"int8": self.k + 4, "int4": self.k // 32 * 20, "bf16": 2 * self.k}[self.mode]
        return self.n * per_row

    def rate(self, ms: float) -> str:
        """GB/s of weights for one activation row (bound by memory), else GFLOP/s."""
        if self.rows == 1:
            return f"{self.weight_bytes / ms / 1e6:.1f} GB/s"
        return f"{2 * self.rows * self.n * self.k / ms / 1e6:.0f} GFLOP/s"


def _calls(mode: str, w: torch.Tensor, builds: dict) -> dict:
    """name -> the matmul x -> y for each build and for PyTorch's stock kernel ("stock")."""
    from ..model.quant import Int4Linear, Int8Linear, quantize_int4, quantize_int8

    n, k = w.shape
    calls = {}
    if mode == "int8":
        q, scale = quantize_int8(w)
        for name, kernels in builds.items():
            packed = kernels.pack_int8(q)
            calls[name] = lambda x, kernels=kernels, packed=packed: kernels.int8_linear(x, packed, scale, n, k)
        stock = Int8Linear(k, n, torch.bfloat16, kernel_choice="stock")
    elif mode == "int4":
        q, scale, zero = quantize_int4(w, 32)
        for name, kernels in builds.items():
            packed = kernels.pack_int4(q, scale.half(), (zero - 8 * scale).half(), 32)
            calls[name] = lambda x, kernels=kernels, packed=packed: kernels.int4_linear(x, packed, n, k, 32)
        stock = Int4Linear(k, n, 32, torch.bfloat16, kernel_choice="stock")
    else:
        wb = w.to(torch.bfloat16)
        for name, kernels in builds.items():
            calls[name] = lambda x, kernels=kernels: kernels.bf16_linear(x, wb)
        calls["stock"] = lambda x: torch.nn.functional.linear(x, wb)
        return calls
    stock.set_weight(w)
    calls["stock"] = stock
    return calls


def kernel_times(shapes=SHAPES, rows=ROWS, repeats: int = 8) -> list[KernelResult]:
    """Best time of `repeats` calls (fewer from 64 rows) for each mode, shape and activation row
    count, or [] where our kernels cannot run here."""
    from ..model.kernels import VARIANTS, cpu_kernels

    if cpu_kernels() is None:
        return []
    builds = {name: kernels for name in VARIANTS if (kernels := cpu_kernels(name)) is not None}
    default = next(name for name, kernels in builds.items() if kernels is cpu_kernels())
    out = []
    for n, k in shapes:
        w = torch.randn(n, k) * 0.02
        for mode in ("int8", "int4", "bf16"):
            calls = _calls(mode, w, builds)
            for m in rows:
                x = torch.randn(m, k, dtype=torch.bfloat16)
                best = dict.fromkeys(calls, float("inf"))
                for _ in range(repeats if m < 64 else max(2, repeats // 4)):
                    for name, call in calls.items():
                        started = time.perf_counter()
                        call(x)
                        best[name] = min(best[name], time.perf_counter() - started)
                ms = {name: t * 1000 for name, t in best.items()}
                out.append(KernelResult(mode, n, k, m, ms[default], ms["stock"],
                                        tuple((name, ms[name]) for name in builds)))
    return out


def kernel_table(results: list[KernelResult]) -> list[str]:
    """Markdown rows: each build's and the stock kernel's time and rate, and the ratios."""
    names = [name for name, _ in results[0].builds_ms] if results else []
    head = ["weight", "mode", "rows", *(f"ours {LABELS.get(n, n)}" for n in names), "PyTorch stock",
            *(f"stock / {LABELS.get(n, n)}" for n in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        ms = dict(r.builds_ms)
        cells = [f"{r.n}x{r.k}", r.mode, str(r.rows), *(f"{ms[n]:.2f} ms, {r.rate(ms[n])}" for n in names),
                 f"{r.stock_ms:.2f} ms, {r.rate(r.stock_ms)}", *(f"{r.stock_ms / ms[n]:.2f}x" for n in names)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
