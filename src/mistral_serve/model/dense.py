"""Unquantized bf16 Linear layers that run on our CPU kernel (kernels/cpu_bf16.cpp).

oneDNN's bf16 GEMM, which F.linear takes on CPU, reads weights at a third of the memory bandwidth
or less at decode (1-16 activation rows), where our AVX512-BF16 kernel is 1.5-3.4x faster; on
CPUs without AVX512-BF16 oneDNN emulates bf16 (0.3 GFLOP/s at 512 rows on an AVX2 EPYC) and ours
widens the weights to float32 for FMAs instead. From about 64 rows (prefill) oneDNN's AVX512-BF16
GEMM is faster (ours: 0.7-0.9x), but every batch size stays on our kernel: its results do not depend
on how many rows are in the batch, and switching kernels by batch size would make a request's tokens
depend on its neighbours (the two differ in the last bit of about 1 output in 5,000).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import NATIVE_BF16, kernels_for

class Bf16Linear(nn.Linear):
    """nn.Linear (no bias) whose weights, names and state dict are the same; only the matmul of
    bf16 activations on CPU runs elsewhere."""

    def __init__(self, in_features: int, out_features: int, device: torch.device | str | None = None,
                 kernel_choice: str = "auto") -> None:
        super().__init__(in_features, out_features, bias=False, device=device)
        self.kernels = bf16_kernels(in_features, kernel_choice)

    def native_spec(self, x: Tensor) -> tuple | None:
        """(kind, tensors, N, K, group) for kernels/cpu_block.cpp, when our kernel runs this layer."""
        if not self._ours(x):
            return None
        return NATIVE_BF16, self.weight, self.weight.new_empty(0), self.out_features, self.in_features, 0

    def _ours(self, x: Tensor) -> bool:
        return (self.kernels is not None and x.dtype == torch.bfloat16 and x.device.type == "cpu"
                and self.weight.dtype == torch.bfloat16
                and self.weight.device.type == "cpu" and self.weight.is_contiguous())

    def forward(self, x: Tensor) -> Tensor:
        if self._ours(x):
            return self.kernels.bf16_linear(x, self.weight)
        return F.linear(x, self.weight)


def bf16_kernels(in_features: int, choice: str = "auto"):
    """Our compiled module (of the `--cpu-kernels` choice) when its bf16 matmul can run here (every
    build has one; K a multiple of 32)."""
    if choice == "stock" or in_features % 32:
        return None
    return kernels_for(choice)
