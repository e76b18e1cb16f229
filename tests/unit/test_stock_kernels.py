"""`--cpu-kernels stock`: none of our compiled code runs, the fused RMSNorm and rotary included,
and the model computes the same numbers as with `auto` to within rounding."""

import sys

import pytest
import torch

from mistral_serve.config import ModelConfig
from mistral_serve.loading import load
from mistral_serve.model.args import preset
from mistral_serve.model.kernels import cpu_kernels, unavailable_reason
from mistral_serve.random_checkpoint import write_random_checkpoint

# Small, but with the widths our kernels take: dim a multiple of 64 (matmuls) and of 16 (RMSNorm),
# head_dim 32 (rotary). The v3 vocabulary, so that the bundled tokenizer fits.
ARGS = preset("demo").replace(dim=128, n_layers=2, hidden_dim=256, n_heads=4, n_kv_heads=2)
TOKENS = torch.tensor([1, *range(1000, 1047)])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_random_checkpoint(ARGS, tmp_path_factory.mktemp("stock") / "tiny", dtype=torch.float32, seed=3)


def _forbid_compiled_code(monkeypatch) -> None:
    """Every module's handle on cpu_kernels (each imports it by name) fails when called, and so
    does a build."""
    def refuse(*args, **kwargs):
        raise AssertionError("our compiled kernels were asked for under --cpu-kernels stock")

    for name, module in list(sys.modules.items()):
        for handle in ("cpu_kernels", "kernels_for"):
            if name.startswith("mistral_serve") and callable(getattr(module, handle, None)):
                monkeypatch.setattr(module, handle, refuse)
    monkeypatch.setattr("mistral_serve.model.kernels._build", refuse, raising=False)


def _run(folder, kernels: str, dtype: str, quantize: str) -> tuple[torch.Tensor, torch.Tensor]:
    model = load(ModelConfig(model=str(folder), dtype=dtype, quantize=quantize, device="cpu",
                             cpu_kernels=kernels)).model
    with torch.inference_mode():
        hidden = model(TOKENS)
        return hidden.float(), model.logits(hidden)


# (compute dtype, quantization, tolerance on hidden states and logits): float32 differs in the
# last bits only; bf16 by a rounding of bf16; int8 and int4 more, since our kernels round the
# activations to int8 in blocks where PyTorch's keep them in bf16.
CASES = [("float32", "none", 1e-5), ("bfloat16", "none", 0.05), ("bfloat16", "int8", 0.1),
         ("bfloat16", "int4", 0.1)]


@pytest.mark.parametrize(("dtype", "quantize", "tol"), CASES)
def test_a_stock_model_never_asks_for_our_kernels_and_matches_auto(folder, monkeypatch, dtype, quantize, tol):
    auto_hidden, auto_logits = _run(folder, "auto", dtype, quantize)
    with monkeypatch.context() as patch:
        _forbid_compiled_code(patch)
        stock_hidden, stock_logits = _run(folder, "stock", dtype, quantize)
    torch.testing.assert_close(stock_hidden, auto_hidden, atol=tol, rtol=tol)
    torch.testing.assert_close(stock_logits, auto_logits, atol=tol, rtol=tol)


def test_the_loader_hands_the_choice_to_every_norm_and_attention(folder):
    from mistral_serve.model.transformer import Attention, RMSNorm

    for kernels, own in (("auto", True), ("stock", False)):
        model = load(ModelConfig(model=str(folder), dtype="float32", quantize="none", device="cpu",
                                 cpu_kernels=kernels)).model
        parts = [m for m in model.modules() if isinstance(m, (RMSNorm, Attention))]
        assert len(parts) == 3 * ARGS.n_layers + 1
        assert model.own_kernels is own and all(m.kernel_choice == kernels for m in parts)


@pytest.mark.skipif(cpu_kernels() is None, reason=f"our CPU kernels: {unavailable_reason()}")
def test_auto_does_run_the_fused_norm_and_rotary(folder, monkeypatch):
    """The other side of the first test: where our kernels exist, auto uses them for RMSNorm and
    rotary (so forbidding them above is a real constraint)."""
    import mistral_serve.model.fused as fused

    model = load(ModelConfig(model=str(folder), dtype="float32", quantize="none", device="cpu")).model
    calls = []
    real = fused.kernels_for
    monkeypatch.setattr(fused, "kernels_for", lambda choice: calls.append(1) or real(choice))
    with torch.inference_mode():
        model(TOKENS)
    assert len(calls) == 3 * ARGS.n_layers + 1  # two norms and one rotary a layer, the final norm


def test_a_gguf_file_loaded_stock_never_asks_for_our_kernels(tmp_path, monkeypatch):
    from support.gguf_files import write_gguf

    from mistral_serve.model.gguf_io import gguf_args, open_gguf_file
    from mistral_serve.model.gguf_loader import load_gguf_transformer

    args = ARGS.replace(vocab_size=512)
    path = tmp_path / "m.gguf"
    write_gguf(path, args, lambda name: "Q4_0")  # int4 layers, Q4 blocks kept exactly, under auto
    outputs = {}
    for kernels in ("auto", "stock"):
        with monkeypatch.context() as patch:
            if kernels == "stock":
                _forbid_compiled_code(patch)
            with open_gguf_file(path) as g:
                model, _ = load_gguf_transformer(g, gguf_args(g), torch.bfloat16, torch.device("cpu"), "auto",
                                                 kernels=kernels)
            with torch.inference_mode():
                outputs[kernels] = model(TOKENS % 512).float()
    assert model.own_kernels is False
    torch.testing.assert_close(outputs["stock"], outputs["auto"], atol=0.1, rtol=0.1)


def _prefill_and_decode(folder, kernels: str):
    """A 40-token prompt through the engine's paged cache, then 8 decode steps of one token (the
    rows our paged attention kernel takes under auto): the runner and every step's logits."""
    from mistral_serve.engine.runner import ModelRunner
    from mistral_serve.engine.scheduler import Batch

    model = load(ModelConfig(model=str(folder), dtype="float32", quantize="none", device="cpu",
                             cpu_kernels=kernels)).model
    runner = ModelRunner(model, num_blocks=8, block_size=16)

    class Seq:  # what the runner reads from a sequence
        tokens, num_computed = TOKENS.tolist(), 0

    seq, table, logits = Seq(), [5, 2, 7, 0], []
    for n in (40, *[1] * 8):
        logits.append(runner.run(Batch([(seq, n)], tables=[table]), [0]))
        seq.num_computed += n
    return runner, torch.cat(logits)


def test_stock_decodes_through_the_paged_cache_without_our_attention_kernel(folder, monkeypatch):
    auto_runner, auto = _prefill_and_decode(folder, "auto")
    with monkeypatch.context() as patch:
        _forbid_compiled_code(patch)
        stock_runner, stock = _prefill_and_decode(folder, "stock")
    assert stock_runner.cache.kernels is None
    assert (auto_runner.cache.kernels is not None) == (cpu_kernels() is not None)
    torch.testing.assert_close(stock, auto, atol=1e-4, rtol=1e-4)
