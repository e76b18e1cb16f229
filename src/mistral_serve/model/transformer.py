"""The Mistral transformer: a pure nn.Module over a flat batch of tokens.

Shapes: N = tokens in this step (all sequences concatenated), dim = model width,
H / KV = query / key-value heads, D = head_dim, V = vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .args import ModelArgs
from .attention import AttentionBackend, NoCache
from .fused import ops_for
from .rope import apply_rotary, inv_frequencies, rotary_tables


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, own_kernels: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.own_kernels = own_kernels  # False: PyTorch's ops only (`--cpu-kernels stock`)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        ops = ops_for(x, self.weight, own=self.own_kernels) if x.shape[-1] % 16 == 0 else None
        if ops is not None:
            return ops.rms_norm(x, self.weight, self.eps)  # the same arithmetic, in one pass
        # Normalise in float32 whatever the compute dtype, as the reference does.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, own_kernels: bool = True) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.own_kernels = own_kernels  # False: PyTorch's rotary only (`--cpu-kernels stock`)
        # q, k and v projections fused into one GEMM: rows [q | k | v].
        self.wqkv = nn.Linear(args.dim, (args.n_heads + 2 * args.n_kv_heads) * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, backend: AttentionBackend,
                layer: int) -> Tensor:
        n = x.shape[0]
        q_size, kv_size = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        qkv = self.wqkv(x)  # (N, (H + 2 KV) D)
        q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
        ops = ops_for(qkv, cos, sin, own=self.own_kernels) if self.head_dim % 32 == 0 else None
        if ops is not None:
            # q and k rotated in place, as one (N, H + KV, D) view of the fresh qkv output.
            ops.rotary_(qkv.view(n, -1, self.head_dim)[:, :self.n_heads + self.n_kv_heads], cos, sin)
            q, k = q.view(n, self.n_heads, self.head_dim), k.view(n, self.n_kv_heads, self.head_dim)
        else:
            q = apply_rotary(q.view(n, self.n_heads, self.head_dim), cos, sin)  # (N, H, D)
            k = apply_rotary(k.view(n, self.n_kv_heads, self.head_dim), cos, sin)  # (N, KV, D)
        v = v.view(n, self.n_kv_heads, self.head_dim)
        out = backend.attend(layer, q, k, v)  # (N, H, D)
        return self.wo(out.reshape(n, q_size))


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.hidden_dim = args.hidden_dim
        # Gate (w1) and up (w3) projections fused: rows [w1 | w3].
        self.w13 = nn.Linear(args.dim, 2 * args.hidden_dim, bias=False)
        self.w2 = nn.Linear(args.hidden_dim, args.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13(x).split(self.hidden_dim, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, args: ModelArgs, own_kernels: bool = True) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps, own_kernels)
        self.attention = Attention(args, own_kernels)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps, own_kernels)
        self.feed_forward = FeedForward(args)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, backend: AttentionBackend,
                layer: int) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, backend, layer)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs, own_kernels: bool = True) -> None:
        """own_kernels: RMSNorm and rotary in our compiled kernels where they can run (fused.py);
        False (the loader's `--cpu-kernels stock`) keeps them in PyTorch, as the Linear layers'
        `own_kernels` does for the matmuls."""
        super().__init__()
        self.args = args
        self.own_kernels = own_kernels
        weight = torch.empty(args.vocab_size, args.dim)
        if not weight.is_meta:  # as nn.Embedding initialises it; a meta tensor (loading) has nothing to
            nn.init.normal_(weight)  # fill, and normal_ on one imports torch's meta kernels: 2 s a process
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, _weight=weight)
        self.layers = nn.ModuleList(Block(args, own_kernels) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps, own_kernels)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        # Not a parameter: recomputed on every device move so it never comes from a checkpoint.
        # Computed on the CPU and moved: on the meta device (loading) it would go through torch's
        # Python meta kernels, whose first use imports torch._dynamo (about 2 s a process).
        freq = inv_frequencies(args.head_dim, args.rope_theta, device=torch.device("cpu"))
        self.register_buffer("inv_freq", freq.to(self.tok_embeddings.weight.device), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.tok_embeddings.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.tok_embeddings.weight.device

    def forward(self, tokens: Tensor, positions: Tensor | None = None,
                backend: AttentionBackend | None = None) -> Tensor:
        """tokens (N,) -> final hidden states (N, dim), already normalised.

        Without a backend the tokens are one sequence starting at position 0.
        """
        if backend is None:
            backend = NoCache([tokens.shape[0]], self.args.sliding_window)
        if positions is None:
            positions = torch.arange(tokens.shape[0], device=tokens.device)
        h = self.tok_embeddings(tokens)  # (N, dim)
        cos, sin = rotary_tables(positions, self.inv_freq, h.dtype)  # (N, D) each
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, backend, i)
        return self.norm(h)

    def logits(self, hidden: Tensor) -> Tensor:
        """hidden (M, dim) -> float32 logits (M, V). Callers pass only the rows they sample."""
        return self.output(hidden).float()
