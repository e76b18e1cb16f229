"""A block as two native calls around attention (kernels/cpu_block.cpp) computes exactly what the
Python modules compute: bit-identical hidden states, prefill and decode through the paged cache,
for every Linear kind our kernels run (int8, int4, bf16) and both activation dtypes."""

import pytest
import torch

from mistral_serve.config import ModelConfig
from mistral_serve.loading import load
from mistral_serve.model.args import preset
from mistral_serve.model.attention import PagedKVCache
from mistral_serve.model.kernels import unavailable_reason
from mistral_serve.model.transformer import Block
from mistral_serve.random_checkpoint import write_random_checkpoint

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"no CPU kernels: {unavailable_reason()}")

# Widths our kernels take (dim a multiple of 64, head_dim 32); GQA 2.
ARGS = preset("demo").replace(dim=128, n_layers=2, hidden_dim=256, n_heads=4, n_kv_heads=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_random_checkpoint(ARGS, tmp_path_factory.mktemp("native") / "tiny", dtype=torch.float32, seed=5)


def _steps(model, native: bool, monkeypatch) -> list[torch.Tensor]:
    """A 9-token prompt then 3 decode steps through a paged cache; the hidden states of each."""
    if not native:
        monkeypatch.setattr(Block, "native", lambda *args: None)
    a = model.args
    cache = PagedKVCache(a.n_layers, 4, 4, a.n_kv_heads, a.head_dim, a.sliding_window, model.dtype, model.device)
    table = [2, 0, 3, 1]
    tokens = [1, *range(1000, 1008)]
    out = []
    with torch.inference_mode():
        cache.begin_step([(table, 0, len(tokens))])
        out.append(model(torch.tensor(tokens), torch.arange(len(tokens)), cache))
        for pos in range(len(tokens), len(tokens) + 3):
            cache.begin_step([(table, pos, 1)])
            out.append(model(torch.tensor([1000 + pos]), torch.tensor([pos]), cache))
    monkeypatch.undo()
    return out


@pytest.mark.parametrize(("dtype", "quantize"), [("bfloat16", "int8"), ("float32", "int8"), ("bfloat16", "int4"),
                                                 ("float32", "int4"), ("bfloat16", "none")])
def test_native_blocks_are_bit_identical_to_the_python_modules(folder, monkeypatch, dtype, quantize):
    model = load(ModelConfig(model=str(folder), dtype=dtype, quantize=quantize, device="cpu")).model
    block = model.layers[0]
    x = torch.zeros(3, ARGS.dim, dtype=model.dtype)
    cos = sin = torch.zeros(3, ARGS.head_dim, dtype=model.dtype)
    assert block.native(x, cos, sin) is not None, "the native path should run this model"
    native, python = _steps(model, True, monkeypatch), _steps(model, False, monkeypatch)
    for a, b in zip(native, python, strict=True):
        assert torch.equal(a, b)


def test_float32_layers_without_our_bf16_matmul_stay_in_python(folder):
    # Unquantized float32: nn.Linear runs on oneDNN, so the native path (our kernels only) is off.
    model = load(ModelConfig(model=str(folder), dtype="float32", quantize="none", device="cpu")).model
    x = torch.zeros(2, ARGS.dim)
    cos = sin = torch.zeros(2, ARGS.head_dim)
    assert model.layers[0].native(x, cos, sin) is None


def test_stock_kernels_never_take_the_native_path(folder):
    model = load(ModelConfig(model=str(folder), dtype="bfloat16", quantize="int8", device="cpu",
                             cpu_kernels="stock")).model
    x = torch.zeros(2, ARGS.dim, dtype=torch.bfloat16)
    cos = sin = torch.zeros(2, ARGS.head_dim, dtype=torch.bfloat16)
    assert model.layers[0].native(x, cos, sin) is None


def test_python_blocks_turns_the_native_path_off_and_back_on(folder):
    model = load(ModelConfig(model=str(folder), dtype="bfloat16", quantize="int4", device="cpu")).model
    x = torch.zeros(2, ARGS.dim, dtype=torch.bfloat16)
    cos = sin = torch.zeros(2, ARGS.head_dim, dtype=torch.bfloat16)
    with model.python_blocks():
        assert all(block.native(x, cos, sin) is None for block in model.layers)
    assert all(block.native(x, cos, sin) is not None for block in model.layers)
