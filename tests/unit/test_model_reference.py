"""Our transformer against transformers' MistralForCausalLM on the same weights (float32)."""

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from support.reference_decode import generate, new_cache, step
from mistral_serve.model.loader import load_folder

CONFIGS = {
    # name: (vocab, sliding window); the window of 6 is shorter than every test sequence.
    "v1-vocab-full": (32000, None),
    "v3-vocab-full": (32768, None),
    "v1-vocab-window": (32000, 6),
    "v3-vocab-window": (32768, 6),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory):
    vocab, window = CONFIGS[request.param]
    cfg = MistralConfig(vocab_size=vocab, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=window,
                        rope_theta=1e6 if window is None else 1e4, max_position_embeddings=128,
                        rms_norm_eps=1e-5, initializer_range=0.1)
    torch.manual_seed(hash(request.param) % 1000)
    ref = MistralForCausalLM(cfg).eval()
    folder = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(folder)
    return ref, load_folder(folder), vocab


def test_logits_equal_reference(pair):
    ref, ours, vocab = pair
    ids = torch.randint(0, vocab, (1, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(ids).logits[0]
        actual = ours.logits(ours(ids[0]))
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() < 1e-4


def test_greedy_tokens_equal_reference(pair):
    ref, ours, vocab = pair
    prompt = torch.randint(0, vocab, (1, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = ref.generate(prompt, max_new_tokens=32, do_sample=False, min_new_tokens=32,
                                pad_token_id=0)[0, 9:].tolist()
    actual = list(generate(ours, prompt[0].tolist(), 32))
    assert actual == expected


@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_incremental_decoding_equals_full_forward(pair, chunk):
    _, ours, vocab = pair
    ids = torch.randint(0, vocab, (25,), generator=torch.Generator().manual_seed(3)).tolist()
    with torch.no_grad():
        full = ours.logits(ours(torch.tensor(ids)))
    cache = new_cache(ours, 1, len(ids))
    pieces = [step(ours, cache, [ids[i:i + chunk]]) for i in range(0, len(ids), chunk)]
    assert (torch.cat(pieces) - full).abs().max().item() < 1e-4


def test_batched_cache_equals_single_sequences(pair):
    _, ours, vocab = pair
    gen = torch.Generator().manual_seed(4)
    a = torch.randint(0, vocab, (13,), generator=gen).tolist()
    b = torch.randint(0, vocab, (21,), generator=gen).tolist()
    with torch.no_grad():
        full_a, full_b = (ours.logits(ours(torch.tensor(x))) for x in (a, b))
    cache = new_cache(ours, 2, 32)
    first = step(ours, cache, [a[:5], b[:9]])
    second = step(ours, cache, [a[5:], []])
    third = step(ours, cache, [[], b[9:]])
    assert (torch.cat([first[:5], second]) - full_a).abs().max().item() < 1e-4
    assert (torch.cat([first[5:], third]) - full_b).abs().max().item() < 1e-4
