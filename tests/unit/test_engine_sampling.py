"""sampling.py on crafted logits: penalties, bias, min_tokens, filters, logprobs, generators."""

import math

import pytest
import torch

from mistral_serve.engine.params import SamplingParams
from mistral_serve.engine.sampling import (SampleRow, apply_penalties, draw, filter_logits, make_generator,
                                           sample, sample_row)

EOS = 2
V = 10


def row(prompt=(), output=(), seed=None, **kw) -> SampleRow:
    gen = None if seed is None else make_generator(seed, torch.device("cpu"))
    return SampleRow(SamplingParams(**kw), list(prompt), list(output), gen, EOS)


def logits(*values) -> torch.Tensor:
    x = torch.zeros(V)
    x[: len(values)] = torch.tensor(values, dtype=torch.float32)
    return x


def test_repetition_penalty_pushes_seen_tokens_down_from_either_side():
    x = logits(0, 0, 0, 2.0, -2.0, 2.0, -2.0, 1.0)
    out = apply_penalties(x.clone(), row(prompt=[3, 4], output=[5, 6], repetition_penalty=2.0))
    assert out[3] == pytest.approx(1.0) and out[5] == pytest.approx(1.0)  # positive: divided
    assert out[4] == pytest.approx(-4.0) and out[6] == pytest.approx(-4.0)  # negative: multiplied
    assert out[7] == pytest.approx(1.0)  # unseen: unchanged
    # Below 1 it favours repetition.
    out = apply_penalties(x.clone(), row(prompt=[3], repetition_penalty=0.5))
    assert out[3] == pytest.approx(4.0)


def test_frequency_penalty_scales_with_output_counts_only():
    x = logits(0, 0, 0, 1.0, 1.0, 1.0, 1.0)
    out = apply_penalties(x.clone(), row(prompt=[6, 6, 6], output=[3, 3, 3, 4], frequency_penalty=0.5))
    assert out[3] == pytest.approx(1.0 - 1.5)
    assert out[4] == pytest.approx(0.5)
    assert out[5] == pytest.approx(1.0)
    assert out[6] == pytest.approx(1.0)  # prompt tokens are not penalised
    out = apply_penalties(x.clone(), row(output=[3], frequency_penalty=-1.0))
    assert out[3] == pytest.approx(2.0)


def test_presence_penalty_is_flat_per_token_seen_in_the_output():
    x = logits(0, 0, 0, 1.0, 1.0, 1.0)
    out = apply_penalties(x.clone(), row(prompt=[5], output=[3, 3, 3, 4], presence_penalty=0.75))
    assert out[3] == pytest.approx(0.25) and out[4] == pytest.approx(0.25)
    assert out[5] == pytest.approx(1.0)


def test_penalties_change_the_greedy_choice():
    x = logits(0, 0, 0, 3.0, 2.9)
    base = sample(x[None].clone(), [row(output=[3], temperature=0)])[0].token
    assert base == 3
    for kw in ({"repetition_penalty": 1.5}, {"frequency_penalty": 0.5}, {"presence_penalty": 0.5}):
        got = sample(x[None].clone(), [row(output=[3], temperature=0, **kw)])[0].token
        assert got == 4, kw


def test_logit_bias_is_added():
    x = logits(0, 0, 0, 5.0)
    out = apply_penalties(x.clone(), row(logit_bias={3: -100.0, 8: 2.5}))
    assert out[3] == pytest.approx(-95.0) and out[8] == pytest.approx(2.5)


def test_min_tokens_bans_eos_and_stop_ids_until_reached():
    x = logits(0, 0, 9.0, 0, 0, 0, 0, 8.0)
    kw = {"min_tokens": 2, "stop_token_ids": [7]}
    out = apply_penalties(x.clone(), row(output=[1], **kw))
    assert out[EOS] == -math.inf and out[7] == -math.inf
    out = apply_penalties(x.clone(), row(output=[1, 1], **kw))
    assert out[EOS] == 9.0 and out[7] == 8.0
    # With ignore_eos, EOS is an ordinary token and stays allowed.
    out = apply_penalties(x.clone(), row(output=[], min_tokens=2, ignore_eos=True))
    assert out[EOS] == 9.0
    assert sample(x[None].clone(), [row(output=[], temperature=0, **kw)])[0].token not in (EOS, 7)


def test_filter_top_k_keeps_the_k_best():
    x = logits(1.0, 5.0, 3.0, 4.0)
    out = filter_logits(x, SamplingParams(temperature=1.0, top_k=2))
    assert torch.isfinite(out).nonzero().flatten().tolist() == [1, 3]


def test_filter_min_p_drops_tokens_below_a_fraction_of_the_best():
    x = torch.log(torch.tensor([0.5, 0.3, 0.1, 0.05, 0.05]))
    out = filter_logits(x, SamplingParams(temperature=1.0, min_p=0.5))
    assert torch.isfinite(out).nonzero().flatten().tolist() == [0, 1]
    out = filter_logits(x, SamplingParams(temperature=1.0, min_p=1.0))
    assert torch.isfinite(out).nonzero().flatten().tolist() == [0]


def test_filter_top_p_keeps_the_smallest_set_covering_p():
    x = torch.log(torch.tensor([0.3, 0.5, 0.15, 0.05]))
    kept = lambda p: torch.isfinite(filter_logits(x, SamplingParams(temperature=1.0, top_p=p))).nonzero().flatten().tolist()
    assert kept(1e-6) == [1]
    assert kept(0.4) == [1]
    assert kept(0.7) == [0, 1]
    assert kept(0.9) == [0, 1, 2]
    assert kept(1.0) == [0, 1, 2, 3]


def test_filter_temperature_scales_logits():
    x = logits(1.0, -2.0, 4.0)
    out = filter_logits(x, SamplingParams(temperature=0.5))
    assert torch.allclose(out, x * 2)


def draws(x, n, **kw):
    r = row(seed=7, **kw)
    return [sample_row(x, r).token for _ in range(n)]


def test_temperature_sharpens_or_flattens_the_distribution():
    x = logits(2.0, 1.0, 0.5)
    cold = draws(x, 600, temperature=0.3).count(0)
    hot = draws(x, 600, temperature=2.0).count(0)
    assert cold > 500
    assert hot < 350
    assert len(set(draws(x, 600, temperature=2.0))) == V  # every token drawn at high temperature


def test_draw_follows_the_distribution_and_never_draws_a_zero():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.0, 0.3, 0.0])
    gen = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([draw(probs, gen) for _ in range(20000)]), minlength=6)
    assert counts[[1, 3, 5]].sum() == 0  # the last token too: past the total is never returned
    # 20,000 draws: each share within 4 standard deviations (at most 0.014) of its probability.
    assert torch.allclose(counts.double() / 20000, probs.double(), atol=0.014)
    # A small probability beside a large one keeps its share.
    tiny = torch.tensor([1.0 - 1e-3, 1e-3])
    assert 8 <= sum(draw(tiny, gen) for _ in range(20000)) <= 35


def test_sampling_respects_filters():
    x = logits(2.0, 1.9, 1.8, 1.7)
    assert set(draws(x, 300, temperature=1.0, top_k=2)) == {0, 1}
    assert set(draws(x, 300, temperature=1.0, top_p=1e-6)) == {0}
    assert set(draws(x, 300, temperature=1.0, min_p=0.98)) == {0}  # e^-0.1 = 0.905 < 0.98
    assert set(draws(x, 300, temperature=1.0, logit_bias={9: 100.0})) == {9}


def test_greedy_rows_and_top_k_1_take_the_argmax():
    x = torch.randn(4, V, generator=torch.Generator().manual_seed(0))
    rows = [row(temperature=0), row(temperature=1.0, top_k=1), row(temperature=0, logit_bias={0: 0.0}),
            row(temperature=1.5, top_k=1, seed=3)]
    got = [s.token for s in sample(x.clone(), rows)]
    assert got == x.argmax(-1).tolist()


def test_seeded_generators_repeat_and_differ():
    x = torch.zeros(V)
    a = draws(x, 50, temperature=1.0)
    b = draws(x, 50, temperature=1.0)
    assert a == b
    r = row(seed=8, temperature=1.0)
    c = [sample_row(x, r).token for _ in range(50)]
    assert c != a
    # Large and negative seeds are folded into 64 bits without error.
    make_generator(2**64 - 1, torch.device("cpu"))
    make_generator(-(2**63), torch.device("cpu"))


def test_rows_sample_independently_of_their_neighbours():
    x = torch.randn(3, V, generator=torch.Generator().manual_seed(1))
    alone = sample(x[1:2].clone(), [row(seed=5, temperature=1.0)])[0].token
    together = sample(x.clone(), [row(seed=1, temperature=1.0), row(seed=5, temperature=1.0),
                                  row(temperature=0)])
    assert together[1].token == alone


def test_logprobs_are_those_of_the_raw_distribution():
    x = logits(3.0, 2.0, 1.0, 0.5)
    r = row(temperature=0, logprobs=True, top_logprobs=3, logit_bias={2: 10.0})
    s = sample_row(x.clone(), r)
    raw = torch.log_softmax(x, -1)
    assert s.token == 2  # chosen with the bias...
    assert s.logprob == pytest.approx(float(raw[2]))  # ...reported without it
    assert [t for t, _ in s.top] == [0, 1, 2]
    assert [v for _, v in s.top] == pytest.approx(raw[:3].tolist())
    plain = sample_row(x.clone(), row(temperature=0))
    assert plain.logprob is None and plain.top == []


def test_sample_checks_the_row_count():
    with pytest.raises(ValueError):
        sample(torch.zeros(2, V), [row()])
