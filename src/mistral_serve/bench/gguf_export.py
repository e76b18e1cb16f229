"""Export a checkpoint folder to GGUF, so llama.cpp can run the very same weights as the engine.

Written for the llama.cpp peer of the benchmarks (see llamacpp_peer.py); it needs the optional
`gguf` package (`pip install gguf`). The output follows what llama.cpp's own
`convert_hf_to_gguf.py` produces for a Mistral checkpoint with a sentencepiece vocabulary:

- architecture "llama" with its hyper-parameters (context, embedding and feed-forward lengths,
  block and head counts, rope dimension count and base, RMS-norm epsilon, file type);
- a llama-style SPM vocabulary (pieces, scores and types read from the sentencepiece model;
  the v3 control pieces such as `[INST]` are CONTROL), bos 1, eos 2, unk 0;
- tensors `token_embd`, `output_norm`, `output`, `blk.N.{attn_norm, attn_q, attn_k, attn_v,
  attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}.weight`. Hugging Face checkpoints keep the
  q/k rows in rotate-half order; llama.cpp's rope wants the interleaved order Mistral's own
  layout uses, so those rows are permuted back (Mistral-layout checkpoints are already in it).

Every 1-D tensor (the norms) is stored in F32; the 2-D ones in the requested type (F32, F16,
Q8_0 or Q4_0: block-32 formats, quantized by `gguf.quants`, bit-exact with ggml's reference
quantizers). A matrix whose rows are not a multiple of 32 falls back to F16 as in
convert_hf_to_gguf.py. Q4_0 here means every matrix in Q4_0, the embedding and output layer
included, unless `output_qtype` names another type for the output layer (`llama-quantize` keeps
it in Q6_K; the benchmark asks for Q8_0, as our int4 mode keeps it in int8).

Memory: the tensor index is written first, then the weights are streamed one tensor at a time
(read, reordered, converted, written), so the peak is about one float32 copy of the largest
tensor plus its quantization temporaries (a few hundred MB for the 7B embedding), not the model.

Not carried over: a sliding window (the "llama" architecture has none, so a checkpoint with one
is exported as full attention; its output differs once a sequence exceeds the window) and tekken
vocabularies (only sentencepiece files are supported).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..model.args import ModelArgs
from ..model.checkpoint import CheckpointFiles, find_checkpoint, half_to_interleaved, read_args
from ..model.errors import CheckpointError
from ..model.safetensors_io import SafetensorsFile
from ..tokenizer import find_tokenizer_file

QTYPES = ("F32", "F16", "Q8_0", "Q4_0")


@dataclass(frozen=True, slots=True)
class _Entry:
    gguf_name: str
    source: str  # tensor name in the checkpoint
    reorder: Callable[[Tensor], Tensor] | None


def _plan(files: CheckpointFiles, args: ModelArgs) -> list[_Entry]:
    """GGUF tensor name -> checkpoint tensor and row reorder, in the order they are written."""
    hf = files.layout == "hf"
    # llama.cpp applies rope to interleaved pairs; HF rows are rotate-half, Mistral's interleaved.
    q_fix = (lambda w: half_to_interleaved(w, args.n_heads)) if hf else None
    k_fix = (lambda w: half_to_interleaved(w, args.n_kv_heads)) if hf else None
    out = [_Entry("token_embd.weight", "model.embed_tokens.weight" if hf else "tok_embeddings.weight", None)]
    for i in range(args.n_layers):
        b = f"blk.{i}."
        if hf:
            p = f"model.layers.{i}."
            names = {"attn_norm": p + "input_layernorm.weight", "attn_q": p + "self_attn.q_proj.weight",
                     "attn_k": p + "self_attn.k_proj.weight", "attn_v": p + "self_attn.v_proj.weight",
                     "attn_output": p + "self_attn.o_proj.weight", "ffn_norm": p + "post_attention_layernorm.weight",
                     "ffn_gate": p + "mlp.gate_proj.weight", "ffn_up": p + "mlp.up_proj.weight",
                     "ffn_down": p + "mlp.down_proj.weight"}
        else:
            p = f"layers.{i}."
            names = {"attn_norm": p + "attention_norm.weight", "attn_q": p + "attention.wq.weight",
                     "attn_k": p + "attention.wk.weight", "attn_v": p + "attention.wv.weight",
                     "attn_output": p + "attention.wo.weight", "ffn_norm": p + "ffn_norm.weight",
                     "ffn_gate": p + "feed_forward.w1.weight", "ffn_up": p + "feed_forward.w3.weight",
                     "ffn_down": p + "feed_forward.w2.weight"}
        for short, source in names.items():
            reorder = q_fix if short == "attn_q" else k_fix if short == "attn_k" else None
            out.append(_Entry(f"{b}{short}.weight", source, reorder))
    out.append(_Entry("output_norm.weight", "model.norm.weight" if hf else "norm.weight", None))
    if not args.tie_embeddings:  # tied: llama.cpp reuses token_embd for the output layer
        out.append(_Entry("output.weight", "lm_head.weight" if hf else "output.weight", None))
    return out


def _vocab(folder: Path, vocab_size: int) -> tuple[list[bytes], list[float], list[int]]:
    """Pieces, scores and token types of the folder's sentencepiece model, padded to vocab_size."""
    import gguf
    from sentencepiece import SentencePieceProcessor

    path = find_tokenizer_file(folder)
    if path is None:
        raise CheckpointError(f"{folder}: no tokenizer file (tokenizer.model or tokenizer.model.vN)")
    if path.suffix == ".json":
        raise CheckpointError(f"{path}: tekken tokenizers are not supported by the GGUF export "
                              "(only sentencepiece models)")
    sp = SentencePieceProcessor(model_file=str(path))
    n = sp.vocab_size()
    if n > vocab_size:
        raise CheckpointError(f"{path}: {n} pieces but the model's vocab_size is {vocab_size}")
    tokens = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [int(gguf.TokenType.UNUSED)] * vocab_size
    T = gguf.TokenType
    for i in range(n):
        tokens[i] = sp.IdToPiece(i).encode("utf-8")
        scores[i] = sp.GetScore(i)
        types[i] = int(T.UNKNOWN if sp.IsUnknown(i) else T.CONTROL if sp.IsControl(i)
                       else T.UNUSED if sp.IsUnused(i) else T.BYTE if sp.IsByte(i) else T.NORMAL)
    return tokens, scores, types


def add_shape_metadata(writer, args: ModelArgs) -> None:
    """The `llama.*` hyper-parameters of a GGUFWriter's file (what gguf_io.read_gguf_args reads)."""
    writer.add_context_length(args.max_seq_len)
    writer.add_embedding_length(args.dim)
    writer.add_block_count(args.n_layers)
    writer.add_feed_forward_length(args.hidden_dim)
    writer.add_head_count(args.n_heads)
    writer.add_head_count_kv(args.n_kv_heads)
    writer.add_key_length(args.head_dim)
    writer.add_value_length(args.head_dim)
    writer.add_rope_dimension_count(args.head_dim)
    writer.add_rope_freq_base(args.rope_theta)
    writer.add_layer_norm_rms_eps(args.norm_eps)
    writer.add_vocab_size(args.vocab_size)


def export_gguf(folder: Path, out: Path, qtype: str, output_qtype: str | None = None) -> Path:
    """Write the checkpoint in `folder` as a GGUF file at `out` with 2-D weights in `qtype` (the
    output layer in `output_qtype` when given).

    qtype: "F32", "F16", "Q8_0" or "Q4_0". The file is written next to `out` under a temporary
    name and renamed when complete. Returns `out`.
    """
    import gguf
    from gguf import GGMLQuantizationType as Q

    for name in (qtype, output_qtype or qtype):
        if name not in QTYPES:
            raise ValueError(f"qtype must be one of {', '.join(QTYPES)}, got {name!r}")
    folder, out = Path(folder), Path(out)
    files = find_checkpoint(folder)
    args = read_args(files)
    by_name = {"F32": Q.F32, "F16": Q.F16, "Q8_0": Q.Q8_0, "Q4_0": Q.Q4_0}
    matrix_type, output_type = by_name[qtype], by_name[output_qtype or qtype]
    file_type = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                 "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[qtype]
    tokens, scores, types = _vocab(folder, args.vocab_size)
    plan = _plan(files, args)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(tmp, "llama")
    try:
        writer.add_name(folder.name)
        add_shape_metadata(writer, args)
        writer.add_file_type(int(file_type))
        if matrix_type not in (Q.F32, Q.F16):
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)

        with ExitStack() as stack:
            handles = {path: stack.enter_context(SafetensorsFile(path))
                       for path in sorted(set(files.weight_map.values()))}

            def info(entry: _Entry):
                path = files.weight_map.get(entry.source)
                if path is None or entry.source not in handles[path].tensors:
                    raise CheckpointError(f"{folder}: tensor '{entry.source}' is missing")
                return handles[path], handles[path].tensors[entry.source]

            # Pass 1: the tensor index (names, shapes, types, sizes), so that the data can then
            # be streamed one tensor at a time.
            types_of: dict[str, Q] = {}
            for entry in plan:
                _, ti = info(entry)
                ttype = (Q.F32 if len(ti.shape) == 1 else output_type if entry.gguf_name == "output.weight"
                         else matrix_type)
                block, type_size = gguf.GGML_QUANT_SIZES[ttype]
                if ti.shape[-1] % block:
                    ttype = Q.F16
                    block, type_size = gguf.GGML_QUANT_SIZES[ttype]
                n = 1
                for d in ti.shape:
                    n *= d
                nbytes = n // block * type_size
                writer.add_tensor_info(entry.gguf_name, ti.shape, np.dtype(np.float32), nbytes, raw_dtype=ttype)
                types_of[entry.gguf_name] = ttype

            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()

            # Pass 2: the data, in the same order.
            for entry in plan:
                f, _ = info(entry)
                t = f.read(entry.source)
                if entry.reorder is not None:
                    t = entry.reorder(t).contiguous()
                ttype = types_of[entry.gguf_name]
                if ttype == Q.F16:
                    data = t.to(torch.float16).numpy()
                else:
                    data = t.to(torch.float32).numpy()
                    if ttype != Q.F32:
                        data = gguf.quants.quantize(data, ttype)
                del t
                writer.write_tensor_data(data)
                del data
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return out
