"""Model hyper-parameters and the named presets of the Mistral 7B family."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelArgs:
    """Shape of a Mistral transformer. Field names follow Mistral's own `params.json`."""

    dim: int = 4096
    n_layers: int = 32
    head_dim: int = 128
    hidden_dim: int = 14336
    n_heads: int = 32
    n_kv_heads: int = 8
    vocab_size: int = 32768
    norm_eps: float = 1e-5
    rope_theta: float = 1_000_000.0
    # None = full causal attention; an int w = each token sees itself and the w-1 before it.
    sliding_window: int | None = None
    # Context length the model was trained for; requests longer than this are refused.
    max_seq_len: int = 32768
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        positive = ("dim", "n_layers", "head_dim", "hidden_dim", "n_heads", "n_kv_heads",
                    "vocab_size", "max_seq_len")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError(f"sliding_window must be positive or None, got {self.sliding_window}")
        if self.norm_eps <= 0 or self.rope_theta <= 0:
            raise ValueError("norm_eps and rope_theta must be positive")

    @property
    def n_params(self) -> int:
        """Number of weights, counted from the shape (embeddings and output layer included)."""
        attn = self.dim * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        mlp = 3 * self.dim * self.hidden_dim
        per_layer = attn + mlp + 2 * self.dim
        output = 0 if self.tie_embeddings else self.vocab_size * self.dim
        return self.vocab_size * self.dim + self.n_layers * per_layer + self.dim + output

    def replace(self, **changes: object) -> "ModelArgs":
        return dataclasses.replace(self, **changes)


_MISTRAL_7B = ModelArgs()

PRESETS: dict[str, ModelArgs] = {
    # v0.1: 32k vocabulary, 4096-token sliding window, rope theta 1e4, trained on 8k.
    "mistral-7b-v0.1": _MISTRAL_7B.replace(vocab_size=32000, sliding_window=4096,
                                           rope_theta=10_000.0, max_seq_len=8192),
    # v0.2: no sliding window, theta 1e6, 32k context.
    "mistral-7b-v0.2": _MISTRAL_7B.replace(vocab_size=32000),
    # v0.3: vocabulary extended to 32768 (768 control tokens), function calling.
    "mistral-7b-v0.3": _MISTRAL_7B,
    # About 1B parameters with the v0.3 vocabulary: a mid-size shape for benchmarks.
    "mistral-1b": _MISTRAL_7B.replace(dim=2048, n_layers=16, n_heads=16, n_kv_heads=4,
                                      hidden_dim=7168),
    # The built-in demo: v0.3 vocabulary, ~20M parameters, fast on any CPU.
    "demo": _MISTRAL_7B.replace(dim=256, n_layers=4, head_dim=32, n_heads=8, n_kv_heads=2,
                                hidden_dim=768),
}


def preset(name: str) -> ModelArgs:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
