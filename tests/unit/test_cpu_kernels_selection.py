"""Which build of our CPU kernels a CPU gets (AVX-512, AVX2, none), what the AVX2 build holds (no
AVX-512 instruction; the same integer sums with and without VNNI), and the layers that run the
kernels: the default build, the fallback to PyTorch's kernels, the labels in logs and reports.
The numerics of every build: test_cpu_kernels.py."""

import dataclasses
import re
import shutil
import subprocess

import pytest
import torch
from torch import nn

from mistral_serve.model import dense, hardware
from mistral_serve.model.dense import Bf16Linear
from mistral_serve.model.kernels import VARIANTS, _build, cpu_kernels, default_variant, unavailable_reason
from mistral_serve.model.quant import (Int4Linear, Int8Linear, QuantConfig, matmul_kernels, quantize_int4,
                                       quantize_int8, swap_linears)
from mistral_serve.model.transformer import Transformer

needs_kernels = pytest.mark.skipif(cpu_kernels() is None, reason=f"our CPU kernels: {unavailable_reason()}")
AVX512 = frozenset({"avx512f", "avx512bw", "avx512vl", "avx2", "fma", "f16c"})
AVX2 = frozenset({"avx2", "fma", "f16c"})


def built(variant: str):
    module = cpu_kernels(variant)
    if module is None:
        pytest.skip(f"the {variant} build: {unavailable_reason(variant) or 'failed'}")
    return module


@pytest.mark.parametrize("flags, expected", [
    (AVX512, "avx512"),
    (AVX512 | {"avx512_vnni", "avx_vnni"}, "avx512"),  # Zen 5: AVX-512 wins over AVX-VNNI
    (AVX2 | {"avx_vnni"}, "avx2"),                      # Alder Lake and later desktops
    (AVX2, "avx2"),                                    # Zen 2 and 3, Haswell to Comet Lake
    (AVX2 | {"avx512f"}, "avx2"),                      # AVX512F alone is not enough (Knights Landing)
    (frozenset({"avx", "sse4_2", "f16c"}), None),      # Sandy and Ivy Bridge: PyTorch's kernels
])
def test_each_cpu_gets_the_widest_build_it_can_run(monkeypatch, flags, expected):
    monkeypatch.setattr("mistral_serve.model.kernels.cpu_flags", lambda: flags)
    chosen = default_variant()
    assert (chosen.name if chosen else None) == expected
    reason = unavailable_reason()
    if expected is None:
        assert reason is not None and "avx2" in reason and "fma" in reason
    elif shutil.which("c++") or shutil.which("g++"):
        assert reason is None


def test_where_the_avx512_build_fails_to_compile_the_avx2_build_runs(monkeypatch):
    avx2 = object()
    monkeypatch.setattr("mistral_serve.model.kernels.cpu_flags", lambda: AVX512)
    monkeypatch.setattr("mistral_serve.model.kernels._module", lambda name: avx2 if name == "avx2" else None)
    assert cpu_kernels() is avx2
    monkeypatch.setattr("mistral_serve.model.kernels._module", lambda name: None)
    assert cpu_kernels() is None


def test_a_build_the_cpu_cannot_run_is_never_built(monkeypatch):
    monkeypatch.setattr("mistral_serve.model.kernels.cpu_flags", lambda: AVX2)
    reason = unavailable_reason("avx512")
    assert reason is not None and "avx512bw" in reason and "avx512f" in reason
    assert "no kernel variant 'sse'" in unavailable_reason("sse")


def test_the_avx2_build_is_compiled_for_avx2_and_avx_vnni_only():
    plain, vnni = VARIANTS["avx2"].cflags(AVX512 | {"avx512_vnni"}), VARIANTS["avx2"].cflags(AVX2 | {"avx_vnni"})
    assert "-mavx2" in plain and "-mfma" in plain and "-mf16c" in plain and "-mavxvnni" not in plain
    assert "-mavxvnni" in vnni
    for flags in (plain, vnni):
        assert "-march=native" not in flags and not any(f.startswith("-mavx512") for f in flags)
    assert "-march=native" in VARIANTS["avx512"].cflags(AVX512)


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
def test_the_avx2_build_holds_no_avx512_instruction():
    """No zmm register, no mask register, and no EVEX encoding (its first byte 0x62) at all."""
    text = subprocess.run(["objdump", "-d", built("avx2").__file__], capture_output=True, text=True,
                          check=True).stdout
    assert "ymm" in text and "zmm" not in text
    assert not re.search(r"%k[1-7]\b|%[xy]mm(1[6-9]|2\d|3[01])\b", text)
    assert not re.search(r"^\s*[0-9a-f]+:\t62 ", text, re.MULTILINE)


def vnni_and_plain_avx2_builds():
    """The narrow build with and without its one-instruction dot products. Where the CPU has no
    AVX-VNNI but AVX512-VNNI and AVX512VL, the same instructions in their EVEX form stand in."""
    flags, avx2 = hardware.cpu_flags(), VARIANTS["avx2"]
    if unavailable_reason("avx2") is not None:
        pytest.skip(f"the avx2 build: {unavailable_reason('avx2')}")
    if "avx_vnni" in flags:
        return cpu_kernels("avx2"), _build(dataclasses.replace(avx2, extras=()))
    if {"avx512_vnni", "avx512vl"} <= flags:
        return _build(avx2, ("-mavx512vnni", "-mavx512vl")), cpu_kernels("avx2")
    pytest.skip("the CPU has neither AVX-VNNI nor AVX512-VNNI")


def test_the_avx2_builds_vnni_path_computes_the_same_bits_as_its_plain_path():
    vnni, plain = vnni_and_plain_avx2_builds()
    assert vnni.has_vnni() and not plain.has_vnni() and vnni.isa() == plain.isa() == "AVX2"
    torch.manual_seed(0)
    w = torch.randn(80, 1536) * 0.02
    q, scale = quantize_int8(w)
    q[0, :64] = -128  # the extreme: |w| = 128 in the plain path's byte pairs
    packed8 = plain.pack_int8(q)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(11, 1536).to(dtype)
        assert torch.equal(vnni.int8_linear(x, packed8, scale, 80, 1536), plain.int8_linear(x, packed8, scale, 80, 1536))
        for group in (32, 128):
            q4, s4, z4 = quantize_int4(w, group)
            packed = plain.pack_int4(q4, s4.half(), (z4 - 8 * s4).half(), group)
            assert torch.equal(vnni.int4_linear(x, packed, 80, 1536, group), plain.int4_linear(x, packed, 80, 1536, group))


@pytest.mark.parametrize("variant, isa", [("avx512", "AVX-512"), ("avx2", "AVX2")])
def test_reports_name_the_build_the_layers_run_on(variant, isa):
    kernels = built(variant)
    assert kernels.isa() == isa
    layer = Int8Linear(512, 64, torch.bfloat16)
    layer.set_weight(torch.randn(64, 512))
    layer.kernels = kernels
    bf16 = Bf16Linear(512, 64).to(torch.bfloat16)
    bf16.kernels = kernels
    expected_bf16 = "AVX512-BF16" if variant == "avx512" and "avx512_bf16" in hardware.cpu_flags() else isa
    assert kernels.bf16_isa() == expected_bf16
    assert matmul_kernels(nn.Sequential(layer, bf16)) == (f"bf16: mistral-serve {expected_bf16}; "
                                                           f"quantized: mistral-serve {isa}")


def test_a_cpu_without_avx512_runs_its_layers_on_the_avx2_build(monkeypatch):
    avx2 = built("avx2")
    monkeypatch.setattr("mistral_serve.model.kernels.cpu_flags", lambda: AVX2)
    assert cpu_kernels() is avx2
    torch.manual_seed(0)
    w, x = torch.randn(64, 1024) * 0.02, torch.randn(3, 1024, dtype=torch.bfloat16)
    own, stock = Int4Linear(1024, 64, 32, torch.bfloat16), Int4Linear(1024, 64, 32, torch.bfloat16, kernel_choice="stock")
    own.set_weight(w)
    stock.set_weight(w)
    assert own.kernels is avx2 and matmul_kernels(nn.Sequential(own)) == "quantized: mistral-serve AVX2"
    ref = stock(x).float()
    assert (own(x).float() - ref).abs().max() < 2e-2 * ref.abs().max()


def test_cpu_flags_come_from_proc_cpuinfo():
    flags = hardware.cpu_flags()
    assert isinstance(flags, frozenset)
    if cpu_kernels() is not None:
        assert default_variant().needs <= flags


@needs_kernels
def test_quantized_layers_run_the_default_build():
    torch.manual_seed(0)
    w, x = torch.randn(64, 512) * 0.02, torch.randn(3, 512, dtype=torch.bfloat16)
    int8, int4 = Int8Linear(512, 64, torch.bfloat16), Int4Linear(512, 64, 32, torch.bfloat16)
    int8.set_weight(w)
    int4.set_weight(w)
    assert int8.kernels is cpu_kernels() and int4.kernels is cpu_kernels()
    q, scale = quantize_int8(w)
    assert torch.equal(int8(x), cpu_kernels().int8_linear(x, cpu_kernels().pack_int8(q), scale, 64, 512))
    assert int4(x).shape == (3, 64)


@needs_kernels
def test_int4_kernel_pads_k_to_its_block():
    """K = 768 is not a multiple of the 512-column block: the padding must add nothing."""
    torch.manual_seed(0)
    w, x = torch.randn(64, 768) * 0.02, torch.randn(3, 768)
    own, stock = Int4Linear(768, 64, 32, torch.float32, "auto"), Int4Linear(768, 64, 32, torch.float32, "stock")
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


needs_bf16 = pytest.mark.skipif(dense.bf16_kernels(64) is None, reason=f"our CPU kernels: {unavailable_reason()}")


@needs_bf16
def test_bf16_layers_run_the_kernel_and_float32_stays_with_pytorch():
    torch.manual_seed(0)
    layer = Bf16Linear(256, 64).to(torch.bfloat16)
    assert layer.kernels is cpu_kernels()
    x = torch.randn(5, 256, dtype=torch.bfloat16)
    assert torch.equal(layer(x), cpu_kernels().bf16_linear(x, layer.weight))
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
    layer = Int8Linear(512, 64, torch.bfloat16, kernel_choice="stock")
    layer.set_weight(torch.randn(64, 512))
    assert layer.kernels is None
    assert matmul_kernels(nn.Sequential(layer)) == "quantized: PyTorch stock"
    with pytest.raises(ValueError, match="cpu-kernels"):
        QuantConfig("int8", kernels="fast")


def test_fused_ops_are_skipped_where_autograd_records():
    from mistral_serve.model.fused import ops_for

    x, w = torch.randn(2, 64, requires_grad=True), torch.randn(64)
    assert ops_for(x, w) is None
    with torch.no_grad():
        assert ops_for(x, w) is cpu_kernels()
    assert ops_for(x.detach(), w.double()) is None  # mixed dtypes: the PyTorch path


@pytest.mark.parametrize("variant, isa", [("avx512", "AVX-512"), ("avx2", "AVX2")])
def test_a_named_build_runs_every_layer_of_a_loaded_model(tmp_path, variant, isa):
    # `--cpu-kernels avx2` on an AVX-512 machine: the matmuls, the norms and rotary and the native
    # blocks all take that build, not the widest one.
    from mistral_serve.config import ModelConfig
    from mistral_serve.loading import load
    from mistral_serve.model.args import preset
    from mistral_serve.random_checkpoint import write_random_checkpoint

    kernels = built(variant)
    args = preset("demo").replace(dim=128, n_layers=1, hidden_dim=256, n_heads=4, n_kv_heads=2)
    folder = write_random_checkpoint(args, tmp_path / "tiny", dtype=torch.float32, seed=1)
    model = load(ModelConfig(model=str(folder), dtype="bfloat16", quantize="int8", device="cpu",
                             cpu_kernels=variant)).model
    assert model.cpu_kernels() is kernels
    assert matmul_kernels(model) == f"quantized: mistral-serve {isa}"
    x = torch.zeros(2, args.dim, dtype=torch.bfloat16)
    cos = sin = torch.zeros(2, args.head_dim, dtype=torch.bfloat16)
    native, _ = model.layers[0].native(x, cos, sin)
    assert native is kernels


def test_an_unknown_kernel_choice_is_refused():
    from mistral_serve.model.kernels import kernels_for

    with pytest.raises(ValueError, match="--cpu-kernels must be one of auto, stock, avx512, avx2"):
        kernels_for("avx10")
