"""Sampling with the extreme values a request may legally set: never NaN, never an exception.

Found by the reliability suite's generated requests: a positive temperature or repetition penalty
too small for float32 made +inf logits (or 0/0), the softmax NaN, torch.multinomial raise, and the
failed engine step ended every request in flight.
"""

import pytest
import torch

from mistral_serve.engine.params import SamplingParams
from mistral_serve.engine.sampling import SampleRow, make_generator, sample

TINY = 5e-324  # the smallest positive double: 0 in float32


@pytest.mark.parametrize("params", [
    dict(temperature=TINY),
    dict(temperature=1e-45, top_p=0.5),
    dict(temperature=1e-30, min_p=0.5),
    dict(repetition_penalty=TINY),
    dict(repetition_penalty=1e-300, temperature=2.0),
    dict(temperature=TINY, repetition_penalty=TINY, top_k=3, min_p=0.9, top_p=0.01),
    dict(temperature=2.0, repetition_penalty=TINY, frequency_penalty=-2.0, presence_penalty=-2.0,
         logit_bias={4: 100.0, 5: 100.0}),
])
def test_extreme_parameters_still_sample_a_token(params):
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 30
    rows = [SampleRow(SamplingParams(**params), [1, 2, 3, 7], [4, 9], make_generator(i, torch.device("cpu")), 0)
            for i in range(3)]
    tokens = [s.token for s in sample(logits, rows)]
    assert all(0 <= t < 50 for t in tokens)


def test_a_tiny_temperature_is_greedy():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1)) * 10
    rows = [SampleRow(SamplingParams(temperature=TINY), [1], [], make_generator(i, torch.device("cpu")), 0)
            for i in range(4)]
    assert [s.token for s in sample(logits, rows)] == logits.argmax(-1).tolist()
