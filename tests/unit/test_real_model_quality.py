"""Quantization on a real trained model (SmolLM2-135M-Instruct, Q4_1 GGUF): int8 and int4 against
float32 on real English text, by perplexity and next-token top-1 agreement.

float32 is the file dequantized (`--quantize none`); int4 keeps the file's Q4_1 blocks exactly
(`auto`), so its only departures are the int8 rounding of activations in our kernels and the
int8 output layer; int8 re-rounds every matrix per output channel (and its activations as int4's). Run with -s for the figures.
"""

import pytest
import torch

from support.real_model import smollm2_gguf
from mistral_serve.bench.perplexity import next_token_logprobs, passage, perplexity_of, top1_agreement
from mistral_serve.model.gguf_io import gguf_args, open_gguf_file
from mistral_serve.model.gguf_loader import load_gguf_transformer
from mistral_serve.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def scored():
    path = smollm2_gguf()
    out = {}
    with open_gguf_file(path) as g:
        args = gguf_args(g)
        tok = load_tokenizer(None, gguf_path=path, gguf_meta=g.metadata, model_vocab_size=args.vocab_size)
        ids = tok.encode(passage())
        for mode in ("none", "int8", "int4"):
            model, label = load_gguf_transformer(g, args, torch.float32, torch.device("cpu"), mode)
            out[mode] = (label, next_token_logprobs(model, ids))
            del model
    return ids, out


def test_the_passage_is_a_few_hundred_tokens_of_real_text(scored):
    ids, out = scored
    assert 300 <= len(ids) <= 600
    # A trained model finds real English far likelier than chance (vocabulary 49152).
    assert perplexity_of(out["none"][1], ids) < 100


# int8: +0.5% with int16 activations; since the kernel rounds activations to int8 per 32 columns
# (llama.cpp's Q8_0 rounding, for the byte multiply-adds) about +1.1% on this 135M-parameter model.
@pytest.mark.parametrize("mode, target", [("int8", 0.015), ("int4", 0.05)])
def test_quantized_perplexity_stays_within_its_target_of_float32(scored, mode, target):
    ids, out = scored
    base = perplexity_of(out["none"][1], ids)
    label, logprobs = out[mode]
    ppl = perplexity_of(logprobs, ids)
    agree = top1_agreement(logprobs, out["none"][1])
    print(f"\n{mode} ({label}): perplexity {ppl:.3f} vs float32 {base:.3f} ({(ppl / base - 1) * 100:+.2f}%), "
          f"next-token top-1 agreement {agree * 100:.1f}% over {len(ids) - 1} positions")
    assert abs(ppl / base - 1) < target
    assert agree > 0.9
