"""RMSNorm and rotary embeddings in one pass each (kernels/cpu_ops.cpp) where our CPU kernels can
run them, else the PyTorch code in transformer.py and rope.py; both give the same numbers (see
the kernel's header)."""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from .kernels import kernels_for


def ops_for(x: Tensor, *others: Tensor, choice: str = "auto") -> ModuleType | None:
    """Our compiled kernels when they can take x and the others: on the CPU, float32 or bfloat16,
    one dtype, and no autograd graph to record (they are not differentiable).

    choice: the model's `--cpu-kernels` (auto, stock, or a build by name); under stock the
    compiled module is never asked for, so it is neither built nor loaded."""
    if choice == "stock" or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16):
        return None
    if any(t.dtype != x.dtype or t.device.type != "cpu" for t in others):
        return None
    if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in others)):
        return None
    return kernels_for(choice)
