"""The transformers peer: `MistralForCausalLM.generate` on the same checkpoint, same dtype."""

from __future__ import annotations

import time
from pathlib import Path

import torch


def transformers_measure(folder: Path, dtype: torch.dtype, prompt_len: int, output_len: int,
                         batch: int, seed: int = 0) -> dict[str, float]:
    """Prefill and decode tokens per second of greedy `generate` on a batch of random prompts."""
    from transformers import MistralForCausalLM

    model = MistralForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, model.config.vocab_size, (batch, prompt_len), generator=gen)
    common = dict(do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        model.generate(ids[:, :8], max_new_tokens=2, min_new_tokens=2, **common)  # warm-up
        started = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **common)
        prefill = time.perf_counter() - started
        started = time.perf_counter()
        model.generate(ids, max_new_tokens=output_len, min_new_tokens=output_len, **common)
        total = time.perf_counter() - started
    del model
    return {"prefill_tok_s": batch * prompt_len / prefill,
            "decode_tok_s": batch * (output_len - 1) / max(total - prefill, 1e-9)}
