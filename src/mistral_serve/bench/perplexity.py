"""Perplexity and next-token agreement on a fixed English passage: how much a quantized model
(ours or llama.cpp's) departs from the float one, measured on real text.

The passage (passage.txt, about 330 words written for this purpose) is scored in one forward
pass; perplexity = exp(mean negative log-likelihood of each token given the ones before it).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

PASSAGE_FILE = Path(__file__).with_name("passage.txt")


def passage() -> str:
    return PASSAGE_FILE.read_text()


def next_token_logprobs(model, ids: list[int]) -> Tensor:
    """log-softmax of our model's logits at every position: (len(ids), vocab) float32."""
    with torch.no_grad():
        logits = model.logits(model(torch.tensor(ids)))
    return torch.log_softmax(logits.float(), dim=-1)


def perplexity_of(logprobs: Tensor, ids: list[int]) -> float:
    """exp(mean NLL) of ids[1:] under logprobs[:-1] (row t predicts token t + 1)."""
    targets = torch.tensor(ids[1:])
    nll = -logprobs[:-1].gather(1, targets[:, None]).squeeze(1)
    return math.exp(nll.mean().item())


def top1_agreement(a: Tensor, b: Tensor) -> float:
    """Share of positions where two models' most likely next token is the same."""
    return (a.argmax(-1) == b.argmax(-1)).float().mean().item()
