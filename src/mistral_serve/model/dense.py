"""Unquantized bf16 Linear layers that take our CPU kernel at decode-sized batches.

oneDNN's bf16 GEMM, which F.linear takes on CPU, reads weights at a third of the memory bandwidth
or less at 1-8 activation rows; our AVX512-BF16 kernel (kernels/cpu_bf16.cpp) is 2.5-3x faster
there, and slower from about 16 rows, where F.linear keeps the work (prefill).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import cpu_kernels

MAX_ROWS = 8  # activation rows up to which our kernel is faster (measured: see the README)


class Bf16Linear(nn.Linear):
    """nn.Linear (no bias) whose weights, names and state dict are the same; only the matmul of
    a few bf16 rows on CPU runs elsewhere."""

    def __init__(self, in_features: int, out_features: int, device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, bias=False, device=device)
        self.kernels = bf16_kernels(in_features)

    def forward(self, x: Tensor) -> Tensor:
        if (self.kernels is not None and x.dtype == torch.bfloat16 and x.device.type == "cpu"
                and x.numel() <= MAX_ROWS * self.in_features and self.weight.dtype == torch.bfloat16
                and self.weight.device.type == "cpu" and self.weight.is_contiguous()):
            return self.kernels.bf16_linear(x, self.weight)
        return F.linear(x, self.weight)


def bf16_kernels(in_features: int):
    """Our compiled module when its bf16 matmul can run here (AVX512-BF16, K a multiple of 32)."""
    kernels = cpu_kernels()
    if kernels is None or in_features % 32 or not kernels.has_bf16_linear():
        return None
    return kernels
