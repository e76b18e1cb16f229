"""The bench's roof measurements on tiny shapes: which shapes, how much work, what a decode token
must read, and the report's rows. No timing asserts: only that the figures are there and fit
together."""

import math

import pytest
import torch

from mistral_serve.config import BenchConfig
from mistral_serve.bench.roof import (DecodeLimit, GemmRoof, LinearShape, PrefillTimes, RoofResult,
                                      linear_shapes, prefill_roof, read_rate, token_bytes)
from mistral_serve.bench.roof_report import decode_limit_lines, prefill_roof_lines
from mistral_serve.bench.summary import Figures, summary_lines
from mistral_serve.model.args import ModelArgs
from mistral_serve.model.quant import Int8Linear, QuantConfig, swap_linears
from mistral_serve.model.transformer import Transformer

ARGS = ModelArgs(dim=64, n_layers=2, head_dim=32, hidden_dim=128, n_heads=4, n_kv_heads=2, vocab_size=2000)
NAMES = ["wqkv", "wo", "w13", "w2"]


def _model(quantize: str = "none") -> Transformer:
    torch.manual_seed(0)
    model = Transformer(ARGS)
    if quantize != "none":
        float_weights = {n: m.weight.detach().clone() for n, m in model.named_modules()
                         if isinstance(m, torch.nn.Linear)}
        swap_linears(model, QuantConfig(quantize), torch.float32, torch.device("cpu"))
        for name, w in float_weights.items():
            model.get_submodule(name).set_weight(w)
    return model.eval().requires_grad_(False)


def test_the_shapes_are_the_blocks_linear_layers_without_the_output():
    shapes = linear_shapes(_model())
    assert [(s.name, s.n, s.k, s.count) for s in shapes] == [
        ("wqkv", (4 + 2 * 2) * 32, 64, 2), ("wo", 64, 128, 2), ("w13", 256, 64, 2), ("w2", 64, 128, 2)]
    assert LinearShape("w2", 64, 128, 2).flops(5) == 2 * 5 * 64 * 128 * 2
    assert linear_shapes(_model("int8")) == shapes  # quantized layers have the same shapes


@pytest.mark.parametrize(("quantize", "reference"), [("none", "float32 F.linear"), ("int8", "int8 torch._int_mm"),
                                                     ("int4", "int8 torch._int_mm")])
def test_a_prefill_is_timed_inside_every_linear_layer_and_against_both_libraries(quantize, reference):
    model = _model(quantize)
    r = prefill_roof(model, 24, quantized=quantize != "none", repeats=1)
    assert r.reference == reference and r.ours.m == 24
    assert sorted(r.ours.linear) == sorted(NAMES) and all(t > 0 for t in r.ours.linear.values())
    assert r.ours.whole >= sum(r.ours.linear.values())  # the layers run inside the forward
    assert [g.kind for g in r.roofs] == ["float32 F.linear", "int8 torch._int_mm"]
    assert all(sorted(g.seconds) == sorted(NAMES) and g.total > 0 for g in r.roofs)
    assert r.flops() == sum(s.flops(24) for s in r.shapes) and math.isfinite(r.ratio) and r.ratio > 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())  # hooks removed


def test_a_decode_token_reads_every_weight_once_and_one_embedding_row():
    model = _model()
    per_token_kv = 2 * ARGS.n_layers * ARGS.n_kv_heads * ARGS.head_dim * 4
    layers = sum(p.numel() for p in model.layers.parameters()) * 4
    head = (ARGS.dim + ARGS.vocab_size * ARGS.dim) * 4  # final norm, output layer
    assert token_bytes(model, 10, per_token_kv) == layers + head + ARGS.dim * 4 + 10 * per_token_kv
    model.output.weight = model.tok_embeddings.weight  # tied: the table is the output layer, read once
    assert token_bytes(model, 0, per_token_kv) == layers + head
    quantized = _model("int8")  # int8 layers: a byte a weight, and their float32 scales
    linears = [m for m in quantized.modules() if isinstance(m, Int8Linear)]
    # Our kernel's rows are padded to whole 512-column blocks (K = 64 here: 8x); stock's are not.
    padded = 512 if linears[0].kernels is not None else 1
    weights = sum(m.out_features * (-(-m.in_features // padded) * padded + 4) for m in linears)
    norms_and_row = (2 * ARGS.n_layers + 1 + 1) * ARGS.dim * 4  # the blocks' and final norms, one table row
    assert token_bytes(quantized, 0, 0) == weights + norms_and_row


def test_the_read_rate_and_the_decode_limit():
    assert read_rate(mib=4, repeats=1) > 0
    d = DecodeLimit(read_bytes_per_s=40e9, token_bytes=500_000_000, ours_tokens_per_s=60.0)
    assert d.limit_tokens_per_s == 80.0 and d.fraction == 0.75
    text = "\n".join(decode_limit_lines(d, 40))
    assert "40.0 GB/s" in text and "500 MB" in text and "80.0 tok/s" in text and "**0.75**" in text


def test_the_roof_table_gives_each_layer_and_the_whole_against_the_reference():
    shapes = (LinearShape("w13", 1000, 500, 2), LinearShape("w2", 500, 500, 2))
    r = RoofResult(shapes, (GemmRoof("bfloat16 F.linear", {"w13": 0.002, "w2": 0.001}),
                            GemmRoof("int8 torch._int_mm", {"w13": 0.001, "w2": 0.0005})),
                   "int8 torch._int_mm", PrefillTimes(100, 0.01, {"w13": 0.004, "w2": 0.002}))
    assert r.ratio == pytest.approx(0.25)
    lines = prefill_roof_lines([r])
    assert "| M | layers | GFLOP | bfloat16 F.linear GFLOP/s | int8 torch._int_mm GFLOP/s | ours GFLOP/s | ours / roof |" in lines
    assert "| 100 | w13 | 0.2 | 100 | 200 | 50 | 0.25 |" in lines  # 0.2 GFLOP in 2, 1 and 4 ms
    assert "| 100 | **all** | 0.3 | 100 | 200 | 50 | **0.25** |" in lines
    assert any("Whole prefill of 100 tokens: 0.01 s, 30 GFLOP/s" in line and "(60%)" in line for line in lines)
    assert prefill_roof_lines([]) == []


def test_the_summary_judges_the_roof_and_bandwidth_targets():
    quantized = "\n".join(summary_lines(Figures(prefill_roof={512: 0.18, 2000: 0.55}, roof_kind="int8 torch._int_mm",
                                                decode_bandwidth=0.85)))
    assert "prefill matmuls, 512 tokens, vs the library GEMM at that M (int8 torch._int_mm) | **0.18** | ≥ 0.5 missed" in quantized
    assert "2000 tokens" in quantized and "**0.55** | ≥ 0.5 met" in quantized
    assert "memory-bandwidth limit | **0.85** | ≥ 0.8 met" in quantized
    bf16 = "\n".join(summary_lines(Figures(prefill_roof={512: 0.38}, roof_kind="bfloat16 F.linear")))
    assert "**0.38** | ≥ 0.7 missed" in bf16 and "bandwidth" not in bf16


def test_the_prompt_lengths_must_be_positive():
    assert BenchConfig().roof_prompt_lens == (512,)
    with pytest.raises(ValueError, match="roof-prompt-lens"):
        BenchConfig(roof_prompt_lens=(512, 0))
