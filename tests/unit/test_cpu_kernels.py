"""Our CPU kernels (model/kernels/), in every build this CPU runs (AVX-512, and AVX2, which any
AVX-512 CPU runs too): the quantized matmuls (cpu_int8.cpp, cpu_int4.cpp) and the bf16 one
(cpu_bf16.cpp) against a float64 reference on the same weights, over every tile shape the kernels
have; a row's result whatever the batch it is in; RMSNorm and rotary against the PyTorch code
they replace (cpu_ops.cpp). Which build a CPU gets, and the layers around the kernels:
test_cpu_kernels_selection.py."""

import pytest
import torch

from mistral_serve.model.quant import quantize_int4, quantize_int8

# M rows of activations: 1, 2, 4 and 6 are the kernels' tile heights; 3, 5, 7, 9 and 13 mix them.
ROWS = [1, 2, 3, 4, 5, 6, 7, 9, 13]


def relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref).abs().max() / ref.abs().max()).item()


def packed_int4(kernels, w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the kernel's buffer, the weights it holds as float64): scale and low (= zero - 8 scale, the
    group minimum) are kept in fp16."""
    n, k = w.shape
    q, scale, zero = quantize_int4(w, group)
    s16, low16 = scale.half(), (zero - 8 * scale).half()
    deq = (q.double().reshape(n, k // group, group) * s16.double()[..., None] + low16.double()[..., None])
    return kernels.pack_int4(q, s16, low16, group), deq.reshape(n, k)


def rounded_like_the_kernels(x: torch.Tensor) -> torch.Tensor:
    """x (M, K) as the int8 and int4 kernels see it: int8 with one scale per 32 columns, computed
    in float32 the way the kernels do (max|x| / 127, its reciprocal, round half to even)."""
    g = x.float().reshape(x.shape[0], -1, 32)
    s = g.abs().amax(-1, keepdim=True) / 127
    s = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round(g * (1 / s)).clamp(-127, 127)
    return (q.double() * s.double()).reshape(x.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n, k", [(72, 768), (70, 1024), (9, 64)])  # K off and on the 512 block; N off 8
@pytest.mark.parametrize("m", ROWS)
def test_int8_kernel_matches_float64(kernels, m, n, k, dtype):
    torch.manual_seed(m * 1000 + n + k)
    q, scale = quantize_int8(torch.randn(n, k) * 0.02)
    q[:, :32] = torch.tensor([-128, 127] * 16, dtype=torch.int8)  # the extremes the packing offsets
    w = q.double() * scale.double()[:, None]
    x = torch.randn(m, k).to(dtype)
    y = kernels.int8_linear(x, kernels.pack_int8(q), scale, n, k)
    assert y.dtype == dtype and y.shape == (m, n)
    # Exact but for float32 sums (and bf16's rounding of the output) once the activations are
    # rounded as the kernel rounds them; within that int8 rounding of the unrounded ones.
    assert relative_error(y, rounded_like_the_kernels(x) @ w.T) < (1e-6 if dtype == torch.float32 else 8e-3)
    assert relative_error(y, x.double() @ w.T) < 2e-2


def test_int8_kernel_rejects_a_buffer_of_the_wrong_size(kernels):
    packed = kernels.pack_int8(torch.zeros(64, 512, dtype=torch.int8))
    with pytest.raises(RuntimeError, match="wrong size"):
        kernels.int8_linear(torch.randn(1, 512), packed[:-1], torch.ones(64), 64, 512)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("group", [32, 64, 128, 256, 512])
@pytest.mark.parametrize("m", ROWS)
def test_int4_kernel_matches_float64(kernels, m, group, dtype):
    torch.manual_seed(m + group)
    n, k = 70, 1536 if group < 256 else 1024
    packed, deq = packed_int4(kernels, torch.randn(n, k) * 0.02, group)
    x = torch.randn(m, k).to(dtype)
    y = kernels.int4_linear(x, packed, n, k, group)
    assert y.dtype == dtype and y.shape == (m, n)
    # Exact but for float32 sums (and bf16's rounding of the output) once the activations are
    # rounded as the kernel rounds them; within the int8 rounding of the unrounded ones.
    assert relative_error(y, rounded_like_the_kernels(x) @ deq.T) < (1e-6 if dtype == torch.float32 else 8e-3)
    assert relative_error(y, x.double() @ deq.T) < 2e-2


@pytest.mark.parametrize("n, k", [(70, 96), (9, 1024), (40, 4096)])  # N off the 8-row tile; K on 32
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 13])
def test_bf16_kernel_matches_float64(kernels, m, n, k):
    torch.manual_seed(m * 100 + n)
    w = (torch.randn(n, k) * 0.05).to(torch.bfloat16)
    x = torch.randn(m, k, dtype=torch.bfloat16)
    y = kernels.bf16_linear(x, w)
    assert y.dtype == torch.bfloat16 and y.shape == (m, n)
    # float32 sums, then the output's bf16 rounding (at most 2^-8 relative).
    assert relative_error(y, x.double() @ w.double().T) < 4e-3


@pytest.mark.parametrize("mode, dtype", [("int8", torch.float32), ("int8", torch.bfloat16), ("int4", torch.float32),
                                         ("int4", torch.bfloat16), ("bf16", torch.bfloat16)])
def test_a_rows_result_does_not_depend_on_the_batch_it_is_in(kernels, mode, dtype):
    torch.manual_seed(0)
    w = torch.randn(64, 1024) * 0.02
    if mode == "int8":
        q, scale = quantize_int8(w)
        packed = kernels.pack_int8(q)
        matmul = lambda x: kernels.int8_linear(x, packed, scale, 64, 1024)  # noqa: E731
    elif mode == "int4":
        packed, _ = packed_int4(kernels, w, 32)
        matmul = lambda x: kernels.int4_linear(x, packed, 64, 1024, 32)  # noqa: E731
    else:
        matmul = lambda x: kernels.bf16_linear(x, w.to(torch.bfloat16))  # noqa: E731
    x = torch.randn(70, 1024).to(dtype)
    whole = matmul(x)
    for m in (1, 2, 3, 4, 5, 6, 7, 9, 13, 64):  # every tile height and mix of them
        assert torch.equal(matmul(x[:m]), whole[:m]), m
        assert torch.equal(matmul(x[m - 1:m]), whole[m - 1:m]), m  # alone, the last row of a tile


def test_int4_kernel_rejects_a_buffer_of_the_wrong_size(kernels):
    packed, _ = packed_int4(kernels, torch.randn(64, 512), 32)
    with pytest.raises(RuntimeError, match="wrong size"):
        kernels.int4_linear(torch.randn(1, 512), packed[:-1], 64, 512, 32)


def torch_rms_norm(x, weight, eps):
    """transformer.RMSNorm's PyTorch path, the one the kernel replaces."""
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 256), (5, 2048), (40, 64)])
def test_fused_rms_norm_matches_the_pytorch_path(kernels, shape, dtype):
    torch.manual_seed(shape[0])
    x = (torch.randn(*shape) * 3).to(dtype)
    weight = (1 + 0.1 * torch.randn(shape[-1])).to(dtype)
    ours, ref = kernels.rms_norm(x, weight, 1e-5), torch_rms_norm(x, weight, 1e-5)
    assert ours.dtype == dtype and ours.shape == x.shape
    # Only the sum of squares is added in another order: float32 noise, or one bf16 step at most.
    limit = 1e-6 if dtype == torch.float32 else 2 ** -7
    assert ((ours.float() - ref.float()).abs() / ref.float().abs().clamp(min=1e-3)).max() <= limit
    if dtype == torch.bfloat16:
        assert (ours == ref).float().mean() > 0.98


def test_fused_rms_norm_keeps_a_nan_a_nan(kernels):
    x = torch.tensor([[float("nan")] + [1.0] * 15], dtype=torch.bfloat16)
    assert torch.isnan(kernels.rms_norm(x, torch.ones(16, dtype=torch.bfloat16), 1e-5)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_rotary_is_bit_identical_to_the_pytorch_path(kernels, dtype):
    from mistral_serve.model.rope import apply_rotary, inv_frequencies, rotary_tables

    torch.manual_seed(0)
    n, heads, kv, d = 7, 4, 2, 64
    qkv = torch.randn(n, (heads + 2 * kv) * d).to(dtype)
    cos, sin = rotary_tables(torch.arange(100, 100 + n), inv_frequencies(d, 1e6), dtype)
    q, k, v = (t.reshape(n, -1, d) for t in qkv.split([heads * d, kv * d, kv * d], dim=-1))
    ref_q, ref_k, ref_v = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v.clone()
    kernels.rotary_(qkv.view(n, -1, d)[:, :heads + kv], cos, sin)  # q and k in place, v untouched
    q, k, v = (t.reshape(n, -1, d) for t in qkv.split([heads * d, kv * d, kv * d], dim=-1))
    assert torch.equal(q, ref_q) and torch.equal(k, ref_k) and torch.equal(v, ref_v)
