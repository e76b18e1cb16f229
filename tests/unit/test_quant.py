"""Weight-only int8 / int4: kernels against their dequantized reference, and the quantized
model's next-token distributions against the float model's (KL divergence, top-1 agreement)."""

import pytest
import torch

from mistral_serve.model.args import ModelArgs
from mistral_serve.model.loader import load_folder
from mistral_serve.model.quant import (Int4Linear, Int8Linear, QuantConfig, dequantize_int4, quantize_int4,
                                       quantize_int8)
from mistral_serve.model.writer import random_parameters, write_checkpoint


@pytest.mark.parametrize("kernels", ["auto", "stock"], ids=["own-kernels", "stock-kernels"])
@pytest.mark.parametrize("act", [torch.float32, torch.bfloat16])
def test_int8_kernel_matches_dequantized_weights(act, kernels):
    torch.manual_seed(0)
    w, x = torch.randn(384, 512) * 0.05, torch.randn(7, 512)
    layer = Int8Linear(512, 384, act, kernels)
    layer.set_weight(w)
    q, scale = quantize_int8(w)
    expected = x @ (q.float() * scale[:, None]).T
    # The stock kernel is exact in fp32; ours rounds activations to int8 per 32 columns, as
    # llama.cpp's Q8_0 does (test_cpu_kernels.py checks it is exact once they are so rounded).
    exact = act == torch.float32 and kernels == "stock"
    tolerance = 2e-4 if exact else 2e-2 * expected.abs().max().item()
    assert (layer(x) - expected).abs().max().item() < tolerance
    assert (q.float() * scale[:, None] - w).abs().max() <= scale.max() / 2 + 1e-7  # rounding error bound


@pytest.mark.parametrize("kernels", ["auto", "stock"], ids=["own-kernels", "stock-kernels"])
@pytest.mark.parametrize("group", [32, 128])
def test_int4_kernel_matches_dequantized_weights(group, kernels):
    torch.manual_seed(1)
    w, x = torch.randn(256, 512) * 0.05, torch.randn(5, 512)
    layer = Int4Linear(512, 256, group, torch.bfloat16, kernels)
    layer.set_weight(w)
    q, scale, zero = quantize_int4(w, group)
    assert q.max() <= 15
    expected = x @ dequantize_int4(q, scale, zero, group).T
    assert (layer(x) - expected).abs().max().item() < 2e-2 * expected.abs().max().item()


def test_int4_refuses_shapes_the_kernel_cannot_take():
    with pytest.raises(ValueError, match="divisible"):
        Int4Linear(100, 64, 32, torch.bfloat16)
    with pytest.raises(ValueError):
        QuantConfig("int3")


ARGS = ModelArgs(dim=256, n_layers=2, head_dim=32, hidden_dim=768, n_heads=8, n_kv_heads=2, vocab_size=2048,
                 max_seq_len=256)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    # Sharper output weights than the default init, so the distributions are far from uniform
    # and top-1 agreement means something.
    params = {name: t * (8.0 if name == "output.weight" else 1.0) for name, t in random_parameters(ARGS, 7)}
    out = tmp_path_factory.mktemp("quant")
    write_checkpoint(out, ARGS, params.items(), dtype=torch.float32)
    return out


def distributions(model, ids):
    with torch.no_grad():
        return torch.log_softmax(model.logits(model(ids)).float(), dim=-1)


@pytest.mark.parametrize("kernels", ["auto", "stock"])
@pytest.mark.parametrize("mode, group, max_kl, min_top1", [
    ("int8", 32, 0.005, 0.95),
    ("int4", 32, 0.02, 0.85),
    ("int4", 128, 0.03, 0.85),
])
def test_quantized_model_stays_close_to_the_float_model(folder, mode, group, max_kl, min_top1, kernels):
    ids = torch.randint(0, ARGS.vocab_size, (128,), generator=torch.Generator().manual_seed(3))
    reference = distributions(load_folder(folder), ids)
    quantized = distributions(load_folder(folder, quant=QuantConfig(mode, group, kernels)), ids)
    kl = (reference.exp() * (reference - quantized)).sum(-1).mean().item()
    top1 = (reference.argmax(-1) == quantized.argmax(-1)).float().mean().item()
    print(f"\n{mode} group {group} ({kernels} kernels): KL(float || quantized) = {kl:.4f} nats, "
          f"top-1 agreement {top1:.1%}")
    assert kl < max_kl and top1 >= min_top1, (kl, top1)


def test_quantized_layers_replace_the_linears(folder):
    model = load_folder(folder, quant=QuantConfig("int4", 32))
    assert isinstance(model.layers[0].attention.wqkv, Int4Linear)
    assert isinstance(model.layers[1].feed_forward.w2, Int4Linear)
    assert isinstance(model.output, Int8Linear)  # the output layer stays int8 in int4 mode
    assert model.layers[0].attention.wqkv.weight.dtype != torch.float32


@pytest.mark.parametrize("mode, group", [("int8", 32), ("int4", 32), ("int4", 128)])
def test_prequantized_checkpoint_loads_to_the_same_model(folder, tmp_path, mode, group):
    """`init --quantize` writes quantized weights; loading them equals quantizing at load time."""
    import json

    from mistral_serve.model.safetensors_io import SafetensorsFile

    params = {name: t * (8.0 if name == "output.weight" else 1.0) for name, t in random_parameters(ARGS, 7)}
    pre = tmp_path / "pre"
    quant = QuantConfig(mode, group)
    write_checkpoint(pre, ARGS, params.items(), dtype=torch.float32, quant=quant)
    config = json.loads((pre / "config.json").read_text())
    assert config["quantization_config"] == {"quant_method": "mistral-serve", "mode": mode, "group_size": group}
    with SafetensorsFile(pre / "model.safetensors") as f:
        qweight = f.tensors["layers.0.attention.wqkv.qweight"]
        assert not qweight.dtype.is_floating_point
        assert qweight.shape[1] == (ARGS.dim if mode == "int8" else ARGS.dim // 2)
    ids = torch.randint(0, ARGS.vocab_size, (32,), generator=torch.Generator().manual_seed(5))
    expected = distributions(load_folder(folder, quant=quant), ids)
    actual = distributions(load_folder(pre), ids)  # quantization read from config.json
    assert torch.allclose(actual, expected, atol=1e-5)


def test_prequantized_checkpoint_refuses_another_quantization(tmp_path):
    from mistral_serve.model.errors import CheckpointError

    pre = tmp_path / "pre"
    write_checkpoint(pre, ARGS, random_parameters(ARGS, 1), dtype=torch.float32, quant=QuantConfig("int8"))
    with pytest.raises(CheckpointError, match="already quantized"):
        load_folder(pre, quant=QuantConfig("int4", 32))


def test_init_writes_a_prequantized_demo_that_serves(tmp_path, capsys):
    from pathlib import Path

    from mistral_serve.cli import main
    from mistral_serve.config import ModelConfig
    from mistral_serve.loading import load

    out = tmp_path / "q"
    assert main(["init", "--preset", "demo", "--out", str(out), "--quantize", "int4", "--group-size", "128"]) == 0
    assert "int4" in capsys.readouterr().out
    loaded = load(ModelConfig(model=str(out), data_dir=Path(tmp_path)))
    assert loaded.card.quantization == "int4 (weight-only, group 128)"
    assert isinstance(loaded.model.layers[0].feed_forward.w13, Int4Linear)
    assert main(["init", "--preset", "demo", "--out", str(tmp_path / "m"), "--quantize", "int8",
                 "--layout", "mistral"]) == 2
