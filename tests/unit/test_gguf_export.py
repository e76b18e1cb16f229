"""The GGUF export runs in llama.cpp to the same logits as our model (q/k rope order included)."""

import shutil

import pytest
import torch

gguf = pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")

from mistral_serve.bench.gguf_export import export_gguf  # noqa: E402
from mistral_serve.model.args import ModelArgs  # noqa: E402
from mistral_serve.model.loader import load_folder  # noqa: E402
from mistral_serve.model.writer import random_parameters, write_checkpoint  # noqa: E402
from mistral_serve.tokenizer import bundled_tokenizer_file  # noqa: E402

# rope_theta and norm_eps away from llama.cpp's defaults, so that metadata not read would show.
ARGS = ModelArgs(dim=256, n_layers=2, head_dim=32, hidden_dim=768, n_heads=8, n_kv_heads=2,
                 vocab_size=32768, rope_theta=5e5, norm_eps=1e-6, max_seq_len=256)
PROMPT = [1, 3, 1500, 27, 9001, 12000, 450, 31000, 77, 2048, 16384, 5, 700, 30000, 1234, 4321]


def sharp_parameters(args):
    """Random weights with q/k scaled up: attention far from uniform, so that a wrong rotary
    order of the q/k rows (or a wrong rope theta) changes the logits well beyond float noise."""
    q_rows = (args.n_heads + args.n_kv_heads) * args.head_dim
    for name, t in random_parameters(args):
        if name.endswith("attention.wqkv.weight"):
            t[:q_rows] *= 10.0
        yield name, t


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    write_checkpoint(folder, ARGS, sharp_parameters(ARGS), dtype=torch.float32)
    shutil.copy(bundled_tokenizer_file("v3"), folder / "tokenizer.model.v3")
    return folder


def llama_logits(path, ids):
    llm = llama_cpp.Llama(str(path), n_ctx=64, n_batch=64, n_threads=2, n_threads_batch=2,
                          logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        return torch.from_numpy(llm.scores[:len(ids)].copy())
    finally:
        llm.close()


def test_f32_export_matches_our_logits(checkpoint, tmp_path):
    path = export_gguf(checkpoint, tmp_path / "model-f32.gguf", "F32")
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["llama.rope.freq_base"].contents() == pytest.approx(5e5)
    assert reader.fields["llama.attention.layer_norm_rms_epsilon"].contents() == pytest.approx(1e-6)
    assert reader.fields["llama.rope.dimension_count"].contents() == ARGS.head_dim
    assert reader.fields["tokenizer.ggml.token_type"].contents()[3] == gguf.TokenType.CONTROL  # [INST]
    theirs = llama_logits(path, PROMPT)
    model = load_folder(checkpoint)
    with torch.inference_mode():
        ours = model.logits(model(torch.tensor(PROMPT)))
    span = (ours[-1].max() - ours[-1].min()).item()
    for pos in (0, 7, len(PROMPT) - 1):
        diff = (ours[pos] - theirs[pos]).abs().max().item()
        assert diff < 1e-2 * span, (pos, diff, span)
        assert ours[pos].argmax() == theirs[pos].argmax(), pos


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_0"])
def test_quantized_exports_load_and_stay_close(checkpoint, tmp_path, qtype):
    path = export_gguf(checkpoint, tmp_path / f"model-{qtype}.gguf", qtype)
    reader = gguf.GGUFReader(path)
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_q.weight"] == qtype and kinds["output.weight"] == qtype
    assert kinds["blk.0.attn_norm.weight"] == "F32" and kinds["output_norm.weight"] == "F32"
    theirs = llama_logits(path, PROMPT)[-1]
    model = load_folder(checkpoint)
    with torch.inference_mode():
        ours = model.logits(model(torch.tensor(PROMPT)))[-1]
    # Same function up to quantization noise: the logits stay strongly correlated.
    corr = torch.corrcoef(torch.stack([ours, theirs]))[0, 1].item()
    assert corr > {"F16": 0.9999, "Q8_0": 0.999, "Q4_0": 0.95}[qtype], corr


def test_the_output_layer_can_take_its_own_type(checkpoint, tmp_path):
    """As the benchmark writes Q4_0 files: our int4 mode keeps the output layer in int8."""
    path = export_gguf(checkpoint, tmp_path / "model-q4-out8.gguf", "Q4_0", output_qtype="Q8_0")
    kinds = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert kinds["output.weight"] == "Q8_0" and kinds["blk.0.ffn_up.weight"] == "Q4_0"
    assert kinds["token_embd.weight"] == "Q4_0"
    with pytest.raises(ValueError, match="qtype"):
        export_gguf(checkpoint, tmp_path / "bad.gguf", "Q4_0", output_qtype="Q5_K")


def test_peer_greedy_decoding_matches_ours(checkpoint, tmp_path):
    """The benchmark loops decode right: single stream, and batched with prompts of different
    lengths split across llama_decode calls, give our model's greedy tokens."""
    from mistral_serve.bench.llamacpp_peer import _Batched, _Single, available

    assert available()
    path = export_gguf(checkpoint, tmp_path / "model-f32.gguf", "F32")
    model = load_folder(checkpoint)
    prompts = [PROMPT, PROMPT[3:14], [1, 2, 3, 4, 5]]  # eos (2) inside a prompt, too
    n_out = 6

    def ours(prompt):
        ids = list(prompt)
        with torch.inference_mode():
            for _ in range(n_out):
                ids.append(int(model.logits(model(torch.tensor(ids)))[-1].argmax()))
        return ids[len(prompt):]

    expected = [ours(p) for p in prompts]
    single = _Single(path, n_ctx=64, n_batch=32, threads=2)
    try:
        assert [single.run(p, n_out)[0] for p in prompts] == expected
    finally:
        single.close()
    batched = _Batched(path, n_seq=3, per_seq=32, n_batch=8, threads=2)
    try:
        assert batched.run(prompts, n_out)[0] == expected
        assert batched.run(prompts, n_out)[0] == expected  # the KV cache is cleared between runs
    finally:
        batched.close()
