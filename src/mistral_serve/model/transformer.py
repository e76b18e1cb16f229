"""The Mistral transformer: a pure nn.Module over a flat batch of tokens.

Shapes: N = tokens in this step (all sequences concatenated), dim = model width,
H / KV = query / key-value heads, D = head_dim, V = vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .args import ModelArgs
from .attention import AttentionBackend, NoCache
from .fused import ops_for
from .kernels import kernels_for
from .rope import apply_rotary, inv_frequencies, rotary_tables


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, kernel_choice: str = "auto") -> None:
        super().__init__()
        self.eps = eps
        self.kernel_choice = kernel_choice  # --cpu-kernels; stock: PyTorch's ops only
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        ops = ops_for(x, self.weight, choice=self.kernel_choice) if x.shape[-1] % 16 == 0 else None
        if ops is not None:
            return ops.rms_norm(x, self.weight, self.eps)  # the same arithmetic, in one pass
        # Normalise in float32 whatever the compute dtype, as the reference does.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, kernel_choice: str = "auto") -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.kernel_choice = kernel_choice  # --cpu-kernels; stock: PyTorch's rotary only
        # q, k and v projections fused into one GEMM: rows [q | k | v].
        self.wqkv = nn.Linear(args.dim, (args.n_heads + 2 * args.n_kv_heads) * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, backend: AttentionBackend,
                layer: int) -> Tensor:
        n = x.shape[0]
        q_size, kv_size = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        qkv = self.wqkv(x)  # (N, (H + 2 KV) D)
        q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
        ops = ops_for(qkv, cos, sin, choice=self.kernel_choice) if self.head_dim % 32 == 0 else None
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

    def split_heads(self, qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """qkv (N, (H + 2 KV) D) -> views q (N, H, D), k and v (N, KV, D)."""
        n = qkv.shape[0]
        q, k, v = qkv.split([self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim,
                             self.n_kv_heads * self.head_dim], dim=-1)
        return (q.view(n, self.n_heads, self.head_dim), k.view(n, self.n_kv_heads, self.head_dim),
                v.view(n, self.n_kv_heads, self.head_dim))


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
    def __init__(self, args: ModelArgs, kernel_choice: str = "auto") -> None:
        super().__init__()
        self.kernel_choice = kernel_choice
        # False: always through the Python modules (Transformer.python_blocks), e.g. to time each
        # Linear layer with hooks, which the native calls do not pass through.
        self.use_native = True
        self.attention_norm = RMSNorm(args.dim, args.norm_eps, kernel_choice)
        self.attention = Attention(args, kernel_choice)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps, kernel_choice)
        self.feed_forward = FeedForward(args)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, backend: AttentionBackend,
                layer: int) -> Tensor:
        if (native := self.native(x, cos, sin)) is not None:
            return self.native_forward(native, x, cos, sin, backend, layer)
        h = x + self.attention(self.attention_norm(x), cos, sin, backend, layer)
        return h + self.feed_forward(self.ffn_norm(h))

    def native(self, x: Tensor, cos: Tensor, sin: Tensor):
        """(our compiled module, the four Linear layers' native specs) when the block can run as two
        native calls around attention (kernels/cpu_block.cpp: the same ops, bit-identical), else None."""
        a = self.attention
        if not self.use_native or x.shape[-1] % 16 or a.head_dim % 32:
            return None
        specs = tuple(native_spec(m, x) for m in (a.wqkv, a.wo, self.feed_forward.w13, self.feed_forward.w2))
        if any(s is None for s in specs):
            return None
        kernels = ops_for(x, self.attention_norm.weight, self.ffn_norm.weight, cos, sin, choice=self.kernel_choice)
        return None if kernels is None else (kernels, specs)

    def native_forward(self, native, x: Tensor, cos: Tensor, sin: Tensor, backend: AttentionBackend,
                       layer: int) -> Tensor:
        kernels, (wqkv, wo, w13, w2) = native
        a = self.attention
        qkv = kernels.block_in(x, self.attention_norm.weight, self.attention_norm.eps, wqkv, cos, sin,
                               a.n_heads, a.n_kv_heads, a.head_dim)  # (N, (H + 2 KV) D), q and k rotated
        out = backend.attend(layer, *a.split_heads(qkv))  # (N, H, D)
        return kernels.block_out(x, out.reshape(x.shape[0], -1), wo, self.ffn_norm.weight, self.ffn_norm.eps,
                                 w13, w2, self.feed_forward.hidden_dim)


def native_spec(linear: nn.Module, x: Tensor) -> tuple | None:
    """The layer as kernels/cpu_block.cpp takes it, when it runs on our kernels for input x."""
    spec = getattr(linear, "native_spec", None)
    return spec(x) if spec is not None else None


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs, kernel_choice: str = "auto") -> None:
        """kernel_choice (`--cpu-kernels`): auto runs RMSNorm, rotary and whole blocks in our
        compiled kernels where they can run (fused.py, kernels/cpu_block.cpp); stock keeps them in
        PyTorch, as the Linear layers' own choice does for the matmuls; avx512 or avx2 names the
        build of ours to run."""
        super().__init__()
        self.args = args
        self.kernel_choice = kernel_choice
        weight = torch.empty(args.vocab_size, args.dim)
        if not weight.is_meta:  # as nn.Embedding initialises it; a meta tensor (loading) has nothing to
            nn.init.normal_(weight)  # fill, and normal_ on one imports torch's meta kernels: 2 s a process
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, _weight=weight)
        self.layers = nn.ModuleList(Block(args, kernel_choice) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps, kernel_choice)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        # Not a parameter: recomputed on every device move so it never comes from a checkpoint.
        # Computed on the CPU and moved: on the meta device (loading) it would go through torch's
        # Python meta kernels, whose first use imports torch._dynamo (about 2 s a process).
        freq = inv_frequencies(args.head_dim, args.rope_theta, device=torch.device("cpu"))
        self.register_buffer("inv_freq", freq.to(self.tok_embeddings.weight.device), persistent=False)

    @property
    def own_kernels(self) -> bool:
        """Whether any compiled code of ours may run (False under `--cpu-kernels stock`)."""
        return self.kernel_choice != "stock"

    @contextmanager
    def python_blocks(self) -> Iterator[None]:
        """Within: every block runs through its Python modules (the same numbers), so that hooks on
        its Linear layers see every call."""
        saved = [block.use_native for block in self.layers]
        for block in self.layers:
            block.use_native = False
        try:
            yield
        finally:
            for block, use in zip(self.layers, saved):
                block.use_native = use

    def cpu_kernels(self):
        """Our compiled module this model runs on the CPU (its `--cpu-kernels` choice), or None."""
        if self.kernel_choice == "stock" or self.device.type != "cpu":
            return None
        return kernels_for(self.kernel_choice)

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
