"""Our AVX-512 kernels (model/kernels/): the quantized matmuls (cpu_quant.cpp) and the bf16 one
(cpu_bf16.cpp) against a float64 reference on the same weights, over every tile shape the kernels
have, and the fallback to PyTorch's kernels where ours cannot run."""

import pytest
import torch

from mistral_serve.model import hardware
from mistral_serve.model import dense
from mistral_serve.model.dense import Bf16Linear
from mistral_serve.model.kernels import REQUIRED_FLAGS, cpu_kernels, unavailable_reason
from mistral_serve.model.quant import (Int4Linear, Int8Linear, QuantConfig, matmul_kernels, quantize_int4,
                                       quantize_int8, swap_linears)
from mistral_serve.model.transformer import Transformer

needs_kernels = pytest.mark.skipif(cpu_kernels() is None, reason=f"our CPU kernels: {unavailable_reason()}")

# M rows of activations: 1, 2 and 4 are the kernels' tile heights; 3, 5, 7 and 9 mix them.
ROWS = [1, 2, 3, 4, 5, 7, 9]


def relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref).abs().max() / ref.abs().max()).item()


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n, k", [(72, 768), (70, 1024), (9, 64)])  # K off and on the 512 block; N off 8
@pytest.mark.parametrize("m", ROWS)
def test_int8_kernel_matches_float64(m, n, k, dtype):
    torch.manual_seed(m * 1000 + n + k)
    w = torch.randn(n, k) * 0.02
    layer = Int8Linear(k, n, dtype)
    layer.set_weight(w)
    assert layer.kernels is not None
    q, scale = quantize_int8(w)
    x = torch.randn(m, k).to(dtype)
    ref = x.double() @ (q.double() * scale.double()[:, None]).T
    y = layer(x)
    assert y.dtype == dtype and y.shape == (m, n)
    # fp32: activations rounded to int16 per 512 columns (~1e-5); bf16: the output's rounding.
    assert relative_error(y, ref) < (1e-4 if dtype == torch.float32 else 8e-3)


def rounded_like_int4_kernel(x: torch.Tensor) -> torch.Tensor:
    """x (M, K) as the int4 kernel sees it: int8 with one scale per 32 columns, computed in
    float32 the way the kernel does (max|x| / 127, its reciprocal, round half to even)."""
    g = x.float().reshape(x.shape[0], -1, 32)
    s = g.abs().amax(-1, keepdim=True) / 127
    s = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round(g * (1 / s)).clamp(-127, 127)
    return (q.double() * s.double()).reshape(x.shape)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("group", [32, 64, 128, 256])
@pytest.mark.parametrize("m", ROWS)
def test_int4_kernel_matches_float64(m, group, dtype):
    torch.manual_seed(m + group)
    n, k = 70, 1536 if group < 256 else 1024
    w = torch.randn(n, k) * 0.02
    layer = Int4Linear(k, n, group, dtype)
    layer.set_weight(w)
    assert layer.kernels is not None
    q, scale, zero = quantize_int4(w, group)
    # The kernel keeps scale and low (= zero - 8 scale, the group minimum) in fp16.
    s16, low16 = scale.half().double(), (zero - 8 * scale).half().double()
    deq = (q.double().reshape(n, k // group, group) * s16[..., None] + low16[..., None]).reshape(n, k)
    x = torch.randn(m, k).to(dtype)
    y = layer(x)
    assert y.dtype == dtype and y.shape == (m, n)
    # Exact but for float32 sums (and bf16's rounding of the output) once the activations are
    # rounded as the kernel rounds them; within the int8 rounding of the unrounded ones.
    assert relative_error(y, rounded_like_int4_kernel(x) @ deq.T) < (1e-6 if dtype == torch.float32 else 8e-3)
    assert relative_error(y, x.double() @ deq.T) < 2e-2


@needs_kernels
def test_int4_kernel_pads_k_to_its_block():
    """K = 768 is not a multiple of the 512-column block: the padding must add nothing."""
    torch.manual_seed(0)
    w, x = torch.randn(64, 768) * 0.02, torch.randn(3, 768)
    own, stock = Int4Linear(768, 64, 32, torch.float32, True), Int4Linear(768, 64, 32, torch.float32, False)
    own.set_weight(w)
    stock.set_weight(w)
    assert own.kernels is not None and stock.kernels is None
    ref = stock(x)
    assert (own(x) - ref).abs().max() < 1e-2 * ref.abs().max()


@needs_kernels
def test_batched_input_keeps_its_leading_dimensions():
    torch.manual_seed(0)
    layer = Int8Linear(512, 96, torch.bfloat16)
    layer.set_weight(torch.randn(96, 512))
    x = torch.randn(2, 3, 512, dtype=torch.bfloat16)
    assert layer(x).shape == (2, 3, 96)
    assert torch.equal(layer(x)[1], layer(x[1]))


needs_bf16 = pytest.mark.skipif(dense.bf16_kernels(64) is None, reason="our bf16 kernel needs AVX512-BF16")


@needs_bf16
@pytest.mark.parametrize("n, k", [(70, 96), (9, 1024), (40, 4096)])  # N off the 8-row tile; K on 32
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 13])
def test_bf16_kernel_matches_float64(m, n, k):
    torch.manual_seed(m * 100 + n)
    layer = Bf16Linear(k, n).to(torch.bfloat16)
    assert layer.kernels is not None
    x = torch.randn(m, k, dtype=torch.bfloat16)
    ref = x.double() @ layer.weight.double().T
    y = layer(x)
    assert y.dtype == torch.bfloat16 and y.shape == (m, n)
    # float32 sums, then the output's bf16 rounding (at most 2^-8 relative).
    assert relative_error(y, ref) < 4e-3
    assert relative_error(layer.kernels.bf16_linear(x, layer.weight).float(), ref) < 4e-3


@needs_bf16
def test_bf16_rows_do_not_depend_on_the_batch_and_float32_stays_with_pytorch():
    torch.manual_seed(0)
    layer = Bf16Linear(256, 64).to(torch.bfloat16)
    x = torch.randn(70, 256, dtype=torch.bfloat16)
    whole = layer(x)
    for m in (1, 2, 3, 4, 7, 9, 64):  # every tile height and mix of them
        assert torch.equal(layer(x[:m]), whole[:m]), m
    layer32 = Bf16Linear(256, 64)
    x32 = torch.randn(2, 256)
    assert torch.equal(layer32(x32), torch.nn.functional.linear(x32, layer32.weight))


@needs_bf16
def test_bf16_models_on_cpu_get_the_kernel_layer_with_the_same_state_dict():
    from mistral_serve.model.args import ModelArgs

    args = ModelArgs(dim=64, n_layers=1, head_dim=16, hidden_dim=128, n_heads=4, n_kv_heads=2, vocab_size=100)
    plain = Transformer(args)
    for compute, kernels, expect in [(torch.bfloat16, "auto", True), (torch.bfloat16, "stock", False),
                                     (torch.float32, "auto", False)]:
        with torch.device("meta"):
            model = Transformer(args)
        swap_linears(model, QuantConfig("none", kernels=kernels), compute, torch.device("cpu"))
        assert isinstance(model.output, Bf16Linear) is expect
        assert list(model.state_dict()) == list(plain.state_dict())
        assert all(p.is_meta for p in model.parameters())  # nothing allocated before loading
    model = Transformer(args).to(torch.bfloat16)
    assert matmul_kernels(model) == "PyTorch"


def test_stock_setting_keeps_pytorchs_kernels():
    assert QuantConfig("int8", kernels="stock") == QuantConfig("int8")  # how it runs, not what it holds
    layer = Int8Linear(512, 64, torch.bfloat16, own_kernels=False)
    layer.set_weight(torch.randn(64, 512))
    assert layer.kernels is None
    with pytest.raises(ValueError, match="cpu-kernels"):
        QuantConfig("int8", kernels="fast")


def test_kernels_are_not_built_for_a_cpu_without_avx512(monkeypatch):
    monkeypatch.setattr("mistral_serve.model.kernels.cpu_flags", lambda: frozenset({"avx2", "fma", "f16c"}))
    reason = unavailable_reason()
    assert reason is not None and "avx512f" in reason and "avx512bw" in reason


def test_cpu_flags_come_from_proc_cpuinfo():
    flags = hardware.cpu_flags()
    assert isinstance(flags, frozenset)
    if cpu_kernels() is not None:
        assert REQUIRED_FLAGS <= flags


needs_ops = pytest.mark.skipif(cpu_kernels() is None, reason=f"our CPU kernels: {unavailable_reason()}")


def torch_rms_norm(x, weight, eps):
    """transformer.RMSNorm's PyTorch path, the one the kernel replaces."""
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 256), (5, 2048), (40, 64)])
def test_fused_rms_norm_matches_the_pytorch_path(shape, dtype):
    torch.manual_seed(shape[0])
    x = (torch.randn(*shape) * 3).to(dtype)
    weight = (1 + 0.1 * torch.randn(shape[-1])).to(dtype)
    ours, ref = cpu_kernels().rms_norm(x, weight, 1e-5), torch_rms_norm(x, weight, 1e-5)
    assert ours.dtype == dtype and ours.shape == x.shape
    # Only the sum of squares is added in another order: float32 noise, or one bf16 step at most.
    limit = 1e-6 if dtype == torch.float32 else 2 ** -7
    assert ((ours.float() - ref.float()).abs() / ref.float().abs().clamp(min=1e-3)).max() <= limit
    if dtype == torch.bfloat16:
        assert (ours == ref).float().mean() > 0.98


@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_rotary_is_bit_identical_to_the_pytorch_path(dtype):
    from mistral_serve.model.rope import apply_rotary, inv_frequencies, rotary_tables

    torch.manual_seed(0)
    n, heads, kv, d = 7, 4, 2, 64
    qkv = torch.randn(n, (heads + 2 * kv) * d).to(dtype)
    cos, sin = rotary_tables(torch.arange(100, 100 + n), inv_frequencies(d, 1e6), dtype)
    q, k, v = (t.reshape(n, -1, d) for t in qkv.split([heads * d, kv * d, kv * d], dim=-1))
    ref_q, ref_k, ref_v = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v.clone()
    cpu_kernels().rotary_(qkv.view(n, -1, d)[:, :heads + kv], cos, sin)  # q and k in place, v untouched
    q, k, v = (t.reshape(n, -1, d) for t in qkv.split([heads * d, kv * d, kv * d], dim=-1))
    assert torch.equal(q, ref_q) and torch.equal(k, ref_k) and torch.equal(v, ref_v)


def test_fused_ops_are_skipped_where_autograd_records():
    from mistral_serve.model.fused import ops_for

    x, w = torch.randn(2, 64, requires_grad=True), torch.randn(64)
    assert ops_for(x, w) is None
    with torch.no_grad():
        assert ops_for(x, w) is cpu_kernels()
    assert ops_for(x.detach(), w.double()) is None  # mixed dtypes: the PyTorch path
