"""Kernel benchmark: one matmul (int8, int4, bf16), our CPU kernels against PyTorch's stock ones,
on the same weights, calls interleaved so that both see the same machine."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

# The Mistral 7B MLP weight, the 1B shape's MLP up and down weights.
SHAPES = ((14336, 4096), (14336, 2048), (2048, 7168))


@dataclass(frozen=True, slots=True)
class KernelResult:
    mode: str
    n: int
    k: int
    rows: int
    ours_ms: float
    stock_ms: float


def kernel_times(shapes=SHAPES, rows=(1, 8, 64), repeats: int = 8) -> list[KernelResult]:
    """Best time of `repeats` calls (each mode, shape and activation row count), or [] where our
    kernels cannot run here."""
    from ..model.dense import bf16_kernels
    from ..model.kernels import cpu_kernels
    from ..model.quant import Int4Linear, Int8Linear

    if cpu_kernels() is None:
        return []
    out = []
    for n, k in shapes:
        w = torch.randn(n, k) * 0.02
        for mode in ("int8", "int4", "bf16"):
            if mode == "bf16":
                kernels = bf16_kernels(k)
                if kernels is None:
                    continue
                wb = w.to(torch.bfloat16)
                layers = [lambda x, wb=wb: kernels.bf16_linear(x, wb),
                          lambda x, wb=wb: torch.nn.functional.linear(x, wb)]
            else:
                layers = []
                for own in (True, False):
                    layer = (Int8Linear(k, n, torch.bfloat16, own) if mode == "int8"
                             else Int4Linear(k, n, 32, torch.bfloat16, own))
                    layer.set_weight(w)
                    layers.append(layer)
            for m in rows:
                x = torch.randn(m, k, dtype=torch.bfloat16)
                best = [float("inf"), float("inf")]
                for _ in range(repeats):
                    for i, layer in enumerate(layers):
                        started = time.perf_counter()
                        layer(x)
                        best[i] = min(best[i], time.perf_counter() - started)
                out.append(KernelResult(mode, n, k, m, best[0] * 1000, best[1] * 1000))
    return out
