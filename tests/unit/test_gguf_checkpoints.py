"""GGUF checkpoints: shape from the metadata, every supported tensor type, exact Q4 blocks,
per-layer modes under --quantize auto, tied output layers, and clear errors for bad files."""

import json
import os

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q

from support.gguf_files import tensors_of, write_gguf
from mistral_serve.model.args import ModelArgs
from mistral_serve.model.checkpoint import find_checkpoint, interleaved_to_half, read_args
from mistral_serve.model.errors import CheckpointError
from mistral_serve.model.gguf_io import open_gguf_file, gguf_args
from mistral_serve.model.gguf_loader import layer_modes, load_gguf_transformer
from mistral_serve.model import ollama
from mistral_serve.model.quant import Int4Linear, Int8Linear
from mistral_serve.model.writer import random_parameters

# dim 256 and hidden 512: every matrix is whole K-quant blocks (256 columns).
ARGS = ModelArgs(dim=256, n_layers=2, head_dim=32, hidden_dim=512, n_heads=8, n_kv_heads=2,
                 vocab_size=512, rope_theta=5e5, norm_eps=1e-6, max_seq_len=256)
CPU = torch.device("cpu")


def load(path, choice="none", dtype=torch.float32):
    with open_gguf_file(path) as g:
        return load_gguf_transformer(g, gguf_args(g), dtype, CPU, choice)


def dequantized(data: np.ndarray, qtype: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(gguf.quants.dequantize(data, Q[qtype]), dtype=np.float32))


def test_metadata_becomes_model_args_and_untied_output_is_read(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path, ARGS)
    assert read_args(find_checkpoint(path)) == ARGS


def test_f32_gguf_loads_the_same_weights_as_the_parameters_it_was_written_from(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path, ARGS)
    model, label = load(path)
    assert label == "float32, from F32"
    expected = dict(random_parameters(ARGS))
    for name, p in model.named_parameters():
        assert torch.equal(p, expected[name]), name


def test_q_and_k_rows_are_put_back_in_rotate_half_order(tmp_path):
    path = tmp_path / "m.gguf"
    stored = write_gguf(path, ARGS)
    model, _ = load(path)
    wqkv = model.layers[1].attention.wqkv.weight
    q_rows = ARGS.n_heads * ARGS.head_dim
    q = interleaved_to_half(torch.from_numpy(stored["blk.1.attn_q.weight"]), ARGS.n_heads)
    assert torch.equal(wqkv[:q_rows], q)


@pytest.mark.parametrize("qtype", ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                   "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
def test_every_supported_type_dequantizes_as_the_gguf_package_does(tmp_path, qtype):
    path = tmp_path / "m.gguf"
    stored = write_gguf(path, ARGS, lambda name: qtype)
    model, label = load(path, "none")
    assert label == f"float32, from {qtype}"  # no file type in the metadata: the commonest matrix type
    expected = dequantized(stored["blk.0.ffn_down.weight"], qtype)
    assert torch.equal(model.layers[0].feed_forward.w2.weight, expected)
    gate = dequantized(stored["blk.0.ffn_gate.weight"], qtype)
    assert torch.equal(model.layers[0].feed_forward.w13.weight[:ARGS.hidden_dim], gate)


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1"])
def test_q4_blocks_are_held_exactly_by_int4(tmp_path, qtype):
    path = tmp_path / "m.gguf"
    stored = write_gguf(path, ARGS, lambda name: qtype)
    with open_gguf_file(path) as g:
        q, scale, low = g.q4_blocks("blk.0.ffn_down.weight")
    n, k = q.shape
    ours = (q.float().view(n, k // 32, 32) * scale.float()[..., None] + low.float()[..., None]).view(n, k)
    assert torch.equal(ours, dequantized(stored["blk.0.ffn_down.weight"], qtype))
    model, label = load(path, "auto")
    assert "Q4 blocks kept exactly" in label and label.endswith(f"from {qtype}")
    assert isinstance(model.layers[0].feed_forward.w2, Int4Linear)


def test_quantized_model_stays_close_to_the_dequantized_one(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path, ARGS, lambda name: "Q4_1")
    ids = torch.arange(1, 40) * 7 % ARGS.vocab_size
    ref, _ = load(path, "none")
    quant, _ = load(path, "auto")
    with torch.no_grad():
        a, b = ref.logits(ref(ids)), quant.logits(quant(ids))
    assert ((a - b).norm() / a.norm()).item() < 0.05


def test_auto_keeps_each_matrix_about_its_own_size_as_in_a_q4_k_m_file(tmp_path):
    # Q4_K_M: most matrices Q4_K, attn_v / ffn_down / output in Q6_K.
    def type_of(name):
        return "Q6_K" if name == "output.weight" or any(w in name for w in ("attn_v", "ffn_down")) else "Q4_K"
    path = tmp_path / "m.gguf"
    write_gguf(path, ARGS, type_of,
               metadata={"general.file_type": int(gguf.LlamaFileType.MOSTLY_Q4_K_M)})
    with open_gguf_file(path) as g:
        modes = layer_modes(g, gguf_args(g), "auto")
    assert modes["layers.0.attention.wqkv"] == "int8"  # q/k Q4_K, v Q6_K: the wider wins
    assert modes["layers.0.attention.wo"] == "int4"
    assert modes["layers.0.feed_forward.w13"] == "int4"
    assert modes["layers.0.feed_forward.w2"] == "int8"
    model, label = load(path, "auto")
    assert label == "int4 + int8 (weight-only), from Q4_K_M"
    assert isinstance(model.layers[0].feed_forward.w13, Int4Linear)
    assert isinstance(model.layers[0].feed_forward.w2, Int8Linear)
    assert isinstance(model.output, Int8Linear)


def test_a_float_gguf_stays_float_under_auto(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path, ARGS, lambda name: "F16")
    model, label = load(path, "auto")
    assert label == "float32, from F16"
    assert not any(isinstance(m, (Int4Linear, Int8Linear)) for m in model.modules())


def test_a_file_without_output_weight_ties_the_output_layer(tmp_path):
    args = ARGS.replace(tie_embeddings=True)
    path = tmp_path / "m.gguf"
    write_gguf(path, args)
    model, _ = load(path)
    assert model.args.tie_embeddings
    assert model.output.weight.data_ptr() == model.tok_embeddings.weight.data_ptr()
    quantized, _ = load(path, "int8")
    assert isinstance(quantized.output, Int8Linear)


def test_a_folder_with_one_gguf_file_is_that_file(tmp_path):
    write_gguf(tmp_path / "only.gguf", ARGS)
    files = find_checkpoint(tmp_path)
    assert files.layout == "gguf" and files.config_file == tmp_path / "only.gguf"


def test_a_folder_with_two_gguf_files_asks_which_one(tmp_path):
    write_gguf(tmp_path / "a.gguf", ARGS)
    write_gguf(tmp_path / "b.gguf", ARGS)
    with pytest.raises(CheckpointError, match=r"holds 2 GGUF files \(a.gguf, b.gguf\)"):
        find_checkpoint(tmp_path)


# ---- bad files ------------------------------------------------------------------------------

def test_a_truncated_file_is_a_one_line_error_naming_it(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path, ARGS)
    data = path.read_bytes()
    for keep in (len(data) - 1000, 20):
        cut = tmp_path / f"cut{keep}.gguf"
        cut.write_bytes(data[:keep])
        with pytest.raises(CheckpointError, match="truncated") as err:
            with open_gguf_file(cut) as g:
                load_gguf_transformer(g, gguf_args(g), torch.float32, CPU, "none")
        assert str(cut) in str(err.value) and "\n" not in str(err.value)


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"PK\x03\x04 not a gguf file")
    with pytest.raises(CheckpointError, match="not a GGUF file"):
        open_gguf_file(path)


def test_an_unknown_architecture_is_named(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path, ARGS, arch="gemma2")
    with pytest.raises(CheckpointError, match="GGUF architecture 'gemma2' is not supported"):
        read_args(find_checkpoint(path))


def test_an_unsupported_tensor_type_names_the_tensor_and_the_type(tmp_path):
    path = tmp_path / "m.gguf"
    tensors = tensors_of(ARGS)
    block, size = gguf.GGML_QUANT_SIZES[Q.IQ4_NL]
    writer_tensors = dict(tensors)
    write_gguf(path, ARGS, lambda name: "F32", tensors=writer_tensors)
    # Rewrite one tensor as IQ4_NL (a type we do not load) with bytes of the right size.
    raw = np.zeros((ARGS.dim, ARGS.hidden_dim // block * size), dtype=np.uint8)
    w = gguf.GGUFWriter(str(tmp_path / "iq.gguf"), "llama")
    reader = gguf.GGUFReader(path)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = field.contents()
        if isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        else:
            w.add_uint32(key, value)
    for name, t in tensors.items():
        if name == "blk.0.ffn_down.weight":
            w.add_tensor(name, raw, raw_dtype=Q.IQ4_NL)
        else:
            w.add_tensor(name, t.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(CheckpointError, match="tensor 'blk.0.ffn_down.weight' has type IQ4_NL"):
        load(tmp_path / "iq.gguf")


def test_a_tensor_whose_shape_disagrees_with_the_metadata_is_named(tmp_path):
    path = tmp_path / "m.gguf"
    tensors = tensors_of(ARGS)
    tensors["blk.1.attn_output.weight"] = tensors["blk.1.attn_output.weight"][:, :128].contiguous()
    write_gguf(path, ARGS, tensors=tensors)
    with pytest.raises(CheckpointError, match=r"tensor 'blk.1.attn_output.weight' has shape \[256, 128\]"):
        load(path)


# ---- Ollama's store -------------------------------------------------------------------------

def lay_out_ollama_store(root, name, tag, blob_bytes):
    digest = "sha256:" + "ab" * 32
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "cd" * 32},
        {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": len(blob_bytes)}]}))
    (root / "blobs").mkdir()
    blob = root / "blobs" / digest.replace(":", "-")
    blob.write_bytes(blob_bytes)
    return blob


def test_an_ollama_name_resolves_to_the_gguf_blob_of_its_manifest(tmp_path, monkeypatch):
    write_gguf(tmp_path / "m.gguf", ARGS)
    store = tmp_path / "store"
    blob = lay_out_ollama_store(store, "mistral", "7b-q4", (tmp_path / "m.gguf").read_bytes())
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    assert ollama.resolve("ollama:mistral:7b-q4") == blob
    files = find_checkpoint(blob)  # a blob has no .gguf suffix: recognised by its magic
    assert files.layout == "gguf"
    assert read_args(files) == ARGS


def test_ollama_names_map_to_manifest_paths(tmp_path):
    assert ollama.manifest_path("mistral", tmp_path) == tmp_path / "manifests/registry.ollama.ai/library/mistral/latest"
    assert ollama.manifest_path("me/tuned:q8", tmp_path) == tmp_path / "manifests/registry.ollama.ai/me/tuned/q8"
    assert ollama.manifest_path("host:5000/ns/m", tmp_path) == tmp_path / "manifests/host:5000/ns/m/latest"
    with pytest.raises(CheckpointError, match="not an Ollama model name"):
        ollama.manifest_path("../../etc", tmp_path)


def test_a_missing_ollama_model_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"ollama:nothere: not in the Ollama store at .*ollama pull nothere"):
        ollama.resolve("ollama:nothere")


# ---- memory ---------------------------------------------------------------------------------

PEAK_PROBE = """
import pathlib, sys, torch
from mistral_serve.model.gguf_io import gguf_args, open_gguf_file
from mistral_serve.model.gguf_loader import load_gguf_transformer
def hwm_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
def load(path):
    with open_gguf_file(pathlib.Path(path)) as g:
        return load_gguf_transformer(g, gguf_args(g), torch.float32, torch.device("cpu"), sys.argv[3])
load(sys.argv[2])  # warm-up: one-time runtime set-up (numpy, threads, our kernels)
before = hwm_kb()
model = load(sys.argv[1])
print(hwm_kb() - before)
"""


@pytest.mark.parametrize("mode", ["none", "auto"])
def test_peak_memory_stays_near_the_loaded_model_size(tmp_path, mode):
    """Tensors are read one at a time, not left mapped: the peak grows by the loaded model plus
    about two float32 copies of its largest matrix, not by the file on top (a mapped file would
    add its 60 MB here, more than the allowance)."""
    import subprocess
    import sys

    args = ModelArgs(dim=512, n_layers=8, head_dim=64, hidden_dim=4096, n_heads=8, n_kv_heads=2, vocab_size=4096)
    write_gguf(tmp_path / "warm.gguf", ARGS, lambda name: "Q8_0")
    big = tmp_path / "big.gguf"
    write_gguf(big, args, lambda name: "Q8_0")
    matrices = args.n_params - args.vocab_size * args.dim  # the output layer counts, the embedding does not
    model_kb = (args.n_params * 4 if mode == "none" else args.vocab_size * args.dim * 4 + matrices * 1.1) / 1024
    largest_kb = 2 * args.hidden_dim * args.dim * 4 / 1024  # the fused gate/up matrix in float32
    # glibc serves blocks under its mmap threshold from the heap, and after the first large free
    # it raises that threshold to 32 MB: this model's 16 MB temporaries would then pile up as
    # heap fragments. A 7B model's matrices (hundreds of MB) are always mapped and unmapped;
    # fixing the threshold makes this small model behave the same way.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    result = subprocess.run([sys.executable, "-c", PEAK_PROBE, str(big), str(tmp_path / "warm.gguf"), mode],
                            capture_output=True, text=True, check=True, env=env)
    growth_kb = int(result.stdout.split()[-1])
    assert growth_kb < model_kb + 2 * largest_kb, \
        f"peak grew by {growth_kb / 1024:.0f} MiB for a {model_kb / 1024:.0f} MiB model ({mode})"
    print(f"\n{mode}: peak grew by {growth_kb / 1024:.0f} MiB for a {model_kb / 1024:.0f} MiB model, "
          f"file {big.stat().st_size / 2**20:.0f} MiB")
