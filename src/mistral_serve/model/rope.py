"""Rotary position embeddings, in the "rotate half" layout of Hugging Face checkpoints.

Mistral's own `consolidated.safetensors` stores q/k rows interleaved (pairs (0,1), (2,3), ...);
the loader permutes those rows once at load time (see `checkpoint.unpermute_rotary`) so that one
rotary implementation serves both layouts.
"""

from __future__ import annotations

import torch
from torch import Tensor


def inv_frequencies(head_dim: int, theta: float, device: torch.device | None = None) -> Tensor:
    """(head_dim/2,) float32: theta^(-2i/head_dim), computed exactly as the reference does."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    return 1.0 / (theta ** exponents)


def rotary_tables(positions: Tensor, inv_freq: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """positions (N,) int -> cos, sin each (N, head_dim), computed in float32 then cast."""
    freqs = positions.float()[:, None] * inv_freq[None, :]  # (N, head_dim/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (N, head_dim)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (N, heads, head_dim); cos/sin (N, head_dim) broadcast over heads."""
    cos, sin = cos[:, None, :], sin[:, None, :]
    return x * cos + _rotate_half(x) * sin
