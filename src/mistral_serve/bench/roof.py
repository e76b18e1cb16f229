"""The machine's own limits, measured in the same run as our figures, and ours against them:

- prefill: the best library GEMM at the same M (rows = prompt tokens) on the model's Linear
  shapes, oneDNN's bf16 (or the model's float dtype) `F.linear` and `torch._int_mm` (int8 x int8
  -> int32), against the time our prefill spends in those Linear layers;
- decode: a plain sum over 512 MiB (the read rate), against the bytes one token must read.

What "ours" is, honestly: one real prefill of M tokens through the model's forward, one chunk
(no engine), with forward hooks around each Linear layer of the blocks; their summed time is our
matmul time, and the whole forward's is reported beside it. The output layer is left out of both
sides: prefill runs it on the last row only. The roof is the library alone, on random inputs of
the same shapes, best of a few calls (its weights partly in cache, as in our prefill).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

READ_MIB = 512


@dataclass(frozen=True, slots=True)
class LinearShape:
    name: str  # the layer's name inside a block: wqkv, wo, w13, w2
    n: int  # output features
    k: int  # input features
    count: int  # how many of them (one a block)

    def flops(self, m: int) -> int:
        """Multiply-adds counted as two operations, at m activation rows, all `count` layers."""
        return 2 * m * self.n * self.k * self.count


@dataclass(frozen=True, slots=True)
class GemmRoof:
    kind: str  # "bfloat16 F.linear", "int8 torch._int_mm", ...
    seconds: dict[str, float]  # layer name -> best seconds for all `count` of them at M rows

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@dataclass(frozen=True, slots=True)
class PrefillTimes:
    m: int
    whole: float  # seconds for the model's forward over m tokens
    linear: dict[str, float]  # layer name -> seconds inside those Linear layers, all blocks


@dataclass(frozen=True, slots=True)
class RoofResult:
    """One model at one M: the shapes, both library roofs, our prefill."""

    shapes: tuple[LinearShape, ...]
    roofs: tuple[GemmRoof, ...]  # the model's float dtype first, then int8
    reference: str  # the kind our figure is judged against (bf16 models: F.linear; int8/int4: _int_mm)
    ours: PrefillTimes

    def flops(self, name: str | None = None) -> int:
        return sum(s.flops(self.ours.m) for s in self.shapes if name in (None, s.name))

    def roof(self, kind: str | None = None) -> GemmRoof:
        return next(r for r in self.roofs if r.kind == (kind or self.reference))

    @property
    def ratio(self) -> float:
        """Ours / roof: the roof's time over ours, for all the matmuls of a prefill."""
        return self.roof().total / sum(self.ours.linear.values())


@dataclass(frozen=True, slots=True)
class DecodeLimit:
    read_bytes_per_s: float  # a plain sum over READ_MIB MiB
    token_bytes: int  # what one decode step of one sequence must read: weights + its KV cache
    ours_tokens_per_s: float  # single-stream decode, engine, same run

    @property
    def limit_tokens_per_s(self) -> float:
        return self.read_bytes_per_s / self.token_bytes

    @property
    def fraction(self) -> float:
        return self.ours_tokens_per_s / self.limit_tokens_per_s


def _is_linear(module: nn.Module) -> bool:
    # nn.Linear and ours (Bf16Linear, Int8Linear, Int4Linear) all carry both attributes.
    return hasattr(module, "in_features") and hasattr(module, "out_features")


def linear_shapes(model: nn.Module) -> tuple[LinearShape, ...]:
    """The Linear layers of the model's blocks, grouped by their name in a block, in order."""
    found: dict[tuple[str, int, int], int] = {}
    for name, module in model.layers.named_modules():
        if _is_linear(module):
            key = (name.rsplit(".", 1)[-1], module.out_features, module.in_features)
            found[key] = found.get(key, 0) + 1
    return tuple(LinearShape(name, n, k, count) for (name, n, k), count in found.items())


def best_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None,
                 min_seconds: float = 0.05, max_calls: int = 100) -> float:
    """Best of at least `repeats` timed calls, after one untimed (oneDNN builds its primitive on
    the first); small calls repeat until `min_seconds` have passed, so that one preempted call on
    a shared machine does not make the roof."""
    fn()
    sync()
    best, spent, calls = float("inf"), 0.0, 0
    while calls < repeats or (spent < min_seconds and calls < max_calls):
        started = time.perf_counter()
        fn()
        sync()
        took = time.perf_counter() - started
        best, spent, calls = min(best, took), spent + took, calls + 1
    return best


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def float_roof(shapes: tuple[LinearShape, ...], m: int, dtype: torch.dtype, device: torch.device,
               repeats: int = 3) -> GemmRoof:
    """F.linear in the model's float dtype (oneDNN on CPU, cuBLAS on CUDA) at m rows."""
    seconds = {}
    for s in shapes:
        x = torch.randn(m, s.k, dtype=dtype, device=device)
        w = torch.randn(s.n, s.k, dtype=dtype, device=device) * 0.02
        seconds[s.name] = s.count * best_seconds(lambda: F.linear(x, w), repeats, _sync(device))
    return GemmRoof(f"{str(dtype).removeprefix('torch.')} F.linear", seconds)


def int8_roof(shapes: tuple[LinearShape, ...], m: int, device: torch.device, repeats: int = 3) -> GemmRoof:
    """torch._int_mm (int8 x int8 -> int32) at m rows, the better of the two weight layouts:
    (N, K) as stored, read transposed, and (K, N) contiguous."""
    seconds = {}
    for s in shapes:
        a = torch.randint(-128, 128, (m, s.k), dtype=torch.int8, device=device)
        w = torch.randint(-128, 128, (s.n, s.k), dtype=torch.int8, device=device)
        wt = w.t().contiguous()
        best = min(best_seconds(lambda b=b: torch._int_mm(a, b), repeats, _sync(device)) for b in (w.t(), wt))
        seconds[s.name] = s.count * best
    return GemmRoof("int8 torch._int_mm", seconds)


def time_prefill(model: nn.Module, m: int, warmup_tokens: int = 16, seed: int = 0) -> PrefillTimes:
    """One forward over m random tokens (one sequence from position 0), timing each Linear layer
    of the blocks with forward hooks; after one short untimed forward (lazy set-up). The blocks run
    through their Python modules (Transformer.python_blocks: the same kernels and numbers), since
    the native block calls pass no hooks; so `whole` includes the modules' Python time."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.args.vocab_size
    tokens = torch.randint(min(1000, vocab - 1), vocab, (m,), generator=gen).to(model.device)
    sync = _sync(model.device)
    linear: dict[str, float] = {}
    started: dict[int, float] = {}

    def before(module, args):
        sync()
        started[id(module)] = time.perf_counter()

    def after(module, args, output, name):
        sync()
        linear[name] = linear.get(name, 0.0) + time.perf_counter() - started.pop(id(module))

    with torch.inference_mode(), model.python_blocks():
        model(tokens[:min(warmup_tokens, m)])
        handles = []
        for name, module in model.layers.named_modules():
            if _is_linear(module):
                short = name.rsplit(".", 1)[-1]
                handles.append(module.register_forward_pre_hook(before))
                handles.append(module.register_forward_hook(lambda mod, a, out, short=short: after(mod, a, out, short)))
        try:
            sync()
            began = time.perf_counter()
            model(tokens)
            sync()
            whole = time.perf_counter() - began
        finally:
            for handle in handles:
                handle.remove()
    return PrefillTimes(m, whole, linear)


def prefill_roof(model: nn.Module, m: int, quantized: bool, repeats: int = 3) -> RoofResult:
    """Our prefill at m tokens against both library GEMMs on the same shapes, measured back to back."""
    shapes = linear_shapes(model)
    ours = time_prefill(model, m)
    dtype = model.dtype if model.dtype.is_floating_point else torch.float32
    roofs = (float_roof(shapes, m, dtype, model.device, repeats), int8_roof(shapes, m, model.device, repeats))
    return RoofResult(shapes, roofs, roofs[1 if quantized else 0].kind, ours)


def read_rate(mib: int = READ_MIB, repeats: int = 5, device: torch.device = torch.device("cpu")) -> float:
    """Bytes per second a plain sum reads, over a buffer far larger than any cache."""
    x = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=device)
    return x.numel() * 4 / best_seconds(lambda: x.sum(), repeats, _sync(device))


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct tensors (a tied weight counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t.numel():
            seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def token_bytes(model: nn.Module, context: int, kv_bytes_per_token: int) -> int:
    """What a decode step of one sequence reads: every weight of the blocks, the final norm and the
    output layer (all of them, at one row), one row of the embedding table unless the output layer
    is that table, and the sequence's KV cache at `context` tokens."""
    parts = [model.layers, model.norm, model.output]
    weights = [t for part in parts for t in (*part.parameters(), *part.buffers())]
    embedding = model.tok_embeddings.weight
    row = 0 if any(t.data_ptr() == embedding.data_ptr() for t in weights) else embedding[0].numel() * embedding.element_size()
    return tensor_bytes(weights) + row + context * kv_bytes_per_token
