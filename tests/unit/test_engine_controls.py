"""Every sampling control through the whole engine, each checked so that ignoring it fails."""

import pytest
import torch

from support.reference_decode import generate
from support.engine_helpers import EOS, assert_no_leaks, engine, model, prompt, reference, run, run_one, tokenizer
from mistral_serve.engine.params import SamplingParams

P = prompt(24, seed=2024)
OTHERS = [prompt(n, seed=3000 + n) for n in (9, 31, 50)]


@pytest.fixture(scope="module")
def ref():
    return reference(P, 40)


def first_logits(p):
    m = model()
    with torch.inference_mode():
        return m.logits(m(torch.tensor(p)))[-1]


def sampled(n=20, **kw):
    kw.setdefault("temperature", 1.0)
    kw.setdefault("ignore_eos", True)
    return SamplingParams(max_tokens=n, **kw)


def test_top_k_1_equals_greedy(ref):
    c = run_one(engine(), P, sampled(20, top_k=1, seed=5))
    assert c.tokens[0] == ref[:20]


def test_tiny_top_p_equals_greedy(ref):
    c = run_one(engine(), P, sampled(20, top_p=1e-6, seed=5))
    assert c.tokens[0] == ref[:20]


def test_min_p_1_equals_greedy_and_min_p_0_does_not(ref):
    assert run_one(engine(), P, sampled(20, min_p=1.0, seed=5)).tokens[0] == ref[:20]
    assert run_one(engine(), P, sampled(20, min_p=0.0, seed=5)).tokens[0] != ref[:20]


def test_temperature_zero_is_greedy_and_high_temperature_is_not(ref):
    assert run_one(engine(), P, sampled(20, temperature=0.0, seed=5)).tokens[0] == ref[:20]
    assert run_one(engine(), P, sampled(20, temperature=2.0, seed=5)).tokens[0] != ref[:20]


def test_logit_bias_plus_100_forces_a_token():
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=8, logit_bias={5000: 100.0}))
    assert c.tokens[0] == [5000] * 8
    c = run_one(engine(), P, sampled(8, logit_bias={6000: 100.0}, seed=1))
    assert c.tokens[0] == [6000] * 8


def test_logit_bias_minus_100_bans_the_greedy_token(ref):
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=1, logit_bias={ref[0]: -100.0}))
    second_best = int(first_logits(P).topk(2).indices[1])
    assert c.tokens[0] == [second_best]


def test_stop_token_ids_stop_with_reason_stop(ref):
    k = next(i for i in range(3, 40) if ref[i] not in ref[:i])
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=40, stop_token_ids=[ref[k]]))
    assert c.tokens[0] == ref[:k + 1]
    assert c.finish[0] == "stop"
    assert c.text() == tokenizer().decode(ref[:k])  # the stop token's own text is not emitted


def test_eos_stops_unless_ignored():
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=10, logit_bias={EOS: 100.0}))
    assert c.tokens[0] == [EOS] and c.finish[0] == "stop"
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=4, logit_bias={EOS: 100.0},
                                            ignore_eos=True))
    assert c.tokens[0] == [EOS] * 4 and c.finish[0] == "length"


def test_min_tokens_bans_eos_until_reached():
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=20, min_tokens=5, logit_bias={EOS: 100.0}))
    toks = c.tokens[0]
    assert EOS not in toks[:5]
    assert toks[5:] == [EOS] and c.finish[0] == "stop"
    # Sampled too, and for stop_token_ids as well.
    c = run_one(engine(), P, SamplingParams(temperature=1.0, seed=3, max_tokens=20, min_tokens=7,
                                            stop_token_ids=[7000], logit_bias={7000: 100.0}))
    assert 7000 not in c.tokens[0][:7] and c.tokens[0][7:] == [7000] and c.finish[0] == "stop"


@pytest.mark.parametrize("n", [1, 7, 13])
def test_max_tokens_gives_length_with_exactly_that_many_tokens(n, ref):
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=n))
    assert len(c.tokens[0]) == n and c.finish[0] == "length"
    assert c.tokens[0] == ref[:n]
    c = run_one(engine(), P, sampled(n, seed=9))
    assert len(c.tokens[0]) == n and c.finish[0] == "length"


def test_stop_string_cuts_text_exactly_before_it_and_never_streams_part_of_it(ref):
    tok = tokenizer()
    full = tok.decode(ref)
    # A stop string straddling two tokens: its first part must be held back, never streamed.
    texts = [tok.decode(ref[:i]) for i in range(len(ref) + 1)]
    for i in range(4, 30):
        a, b = texts[i], texts[i + 1]
        if b.startswith(a) and len(b) - len(a) >= 2 and len(a) >= 2 and a[-2:].strip() and b[len(a):].strip():
            stop = a[-2:] + b[len(a):len(a) + 2]
            if full.find(stop) == len(a) - 2:
                break
    else:
        pytest.fail("no stop string found in the greedy text")
    cut = full.find(stop)
    eng = engine()
    eng.add_request(P, SamplingParams(temperature=0, max_tokens=40, stop=[stop]))
    streamed = ""
    finish = None
    while eng.has_unfinished():
        for out in eng.step():
            for d in out.deltas:
                streamed += d.text
                finish = d.finish_reason
                # At every point, what was sent is a prefix of the final text (nothing retracted).
                assert full[:cut].startswith(streamed), (streamed, stop)
                assert stop not in streamed
    assert streamed == full[:cut]
    assert finish == "stop"
    # Generation stopped at the token that completed the stop string.
    assert len(eng.blocks.ref_counts) and all(r == 0 for r in eng.blocks.ref_counts)
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=40, stop=[stop]))
    assert c.tokens[0] == ref[:i + 1]
    # Several stop strings: the earliest occurrence wins; one never produced changes nothing.
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=40, stop=["\x00never", stop]))
    assert c.text() == full[:cut]


def test_stop_string_at_the_start_gives_empty_text(ref):
    tok = tokenizer()
    first = tok.decode(ref[:1]).strip()[:1]
    assert first
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=10, stop=[first]))
    assert c.finish[0] == "stop"
    assert first not in c.text()
    assert c.text() == tok.decode(ref[:1])[:tok.decode(ref[:1]).find(first)]


def test_text_without_stops_equals_the_decoded_tokens(ref):
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=30))
    assert c.text() == tokenizer().decode(ref[:30])


def test_same_seed_repeats_alone_and_in_a_batch():
    params = sampled(16, seed=1234)
    alone = run_one(engine(), P, params).tokens[0]
    again = run_one(engine(), P, sampled(16, seed=1234)).tokens[0]
    assert alone == again
    eng = engine(max_num_batched_tokens=32)
    mix = [(OTHERS[0], sampled(10)), (OTHERS[1], SamplingParams(temperature=0, max_tokens=20)),
           (P, params), (OTHERS[2], sampled(20, seed=1234)), (P, sampled(16, seed=77))]
    got = list(run(eng, mix).values())
    assert got[2].tokens[0] == alone
    assert got[4].tokens[0] != alone  # a different seed differs
    assert got[3].tokens[0] != alone  # same seed, other prompt: its own stream
    assert_no_leaks(eng)


def test_unseeded_sampling_differs_between_runs():
    a = run_one(engine(), P, sampled(16)).tokens[0]
    b = run_one(engine(), P, sampled(16)).tokens[0]
    assert a != b


@pytest.mark.parametrize("caching", [True, False])
def test_n_samples_with_a_seed(caching):
    eng = engine(enable_prefix_caching=caching)
    c = run_one(eng, P, SamplingParams(n=3, temperature=1.0, seed=99, max_tokens=12, ignore_eos=True))
    assert c.finished
    assert sorted(c.tokens) == [0, 1, 2]
    seqs = [c.tokens[i] for i in range(3)]
    assert all(len(s) == 12 for s in seqs)
    assert len({tuple(s) for s in seqs}) == 3
    assert all(c.finish[i] == "length" for i in range(3))
    assert all(o.prompt_tokens == len(P) for o in c.outputs)
    if caching:
        # Samples 1 and 2 start once sample 0 has read the prompt, and find its full block cached.
        assert eng.blocks.hits == 2 * 16
    else:
        assert eng.blocks.hits == 0
    again = run_one(engine(enable_prefix_caching=not caching), P,
                    SamplingParams(n=3, temperature=1.0, seed=99, max_tokens=12, ignore_eos=True))
    assert [again.tokens[i] for i in range(3)] == seqs
    assert_no_leaks(eng)


def test_n_greedy_samples_are_all_the_greedy_output(ref):
    c = run_one(engine(), P, SamplingParams(n=2, temperature=0, max_tokens=6))
    assert c.tokens[0] == c.tokens[1] == ref[:6]


def test_logprobs_under_greedy(ref):
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=6, logprobs=True, top_logprobs=5))
    lps = c.logprobs[0]
    assert [lp.token_id for lp in lps] == ref[:6] == c.tokens[0]
    expected = torch.log_softmax(first_logits(P), -1)
    assert lps[0].logprob == pytest.approx(float(expected[ref[0]]), abs=1e-4)
    for lp in lps:
        assert len(lp.top) == 5
        assert lp.top[0][0] == lp.token_id
        assert lp.top[0][1] == pytest.approx(lp.logprob, abs=1e-6)
        values = [v for _, v in lp.top]
        assert all(v <= 0 for v in values)
        assert values == sorted(values, reverse=True)
        assert len({t for t, _ in lp.top}) == 5
    assert [t for t, _ in lps[0].top] == expected.topk(5).indices.tolist()


def test_logprobs_off_reports_none_and_logprobs_only_reports_the_token():
    c = run_one(engine(), P, SamplingParams(temperature=0, max_tokens=4))
    assert c.logprobs[0] == []
    c = run_one(engine(), P, sampled(4, seed=3, logprobs=True))
    assert len(c.logprobs[0]) == 4
    assert all(lp.top == [] and lp.logprob <= 0 for lp in c.logprobs[0])
    assert [lp.token_id for lp in c.logprobs[0]] == c.tokens[0]


def penalised_reference(p, n, repetition=1.0, frequency=0.0, presence=0.0, bias=None):
    """Greedy with the penalties (then the bias) written out plainly, on the dense reference loop."""
    out: list[int] = []

    def pick(logits):
        x = logits.clone()
        for t in set(p) | set(out):
            x[t] = x[t] / repetition if x[t] > 0 else x[t] * repetition
        for t in set(out):
            x[t] -= frequency * out.count(t) + presence
        for t, b in (bias or {}).items():
            x[t] += b
        token = int(x.argmax())
        out.append(token)
        return token

    return list(generate(model(), p, n, pick=pick))


# A prompt repeating 3 tokens. The random model does not repeat itself on its own, so a logit_bias
# on two of the prompt's tokens makes repetition a close call: with +4 greedy loops on 4242, with
# +3 it picks 4242 now and then; the penalties then decide.
REPEATED = [1] + [4242, 4243, 4244] * 12


def biased(b):
    return {4242: float(b), 4243: float(b)}


def greedy_with(b, **kw):
    return SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, logit_bias=biased(b), **kw)


def repeats(toks):
    return len(toks) - len(set(toks))


def in_prompt(toks):
    return sum(t in REPEATED for t in toks)


@pytest.mark.parametrize("b,kw,ref_kw", [
    (4, {"repetition_penalty": 1.8}, {"repetition": 1.8}),
    (3, {"repetition_penalty": 0.3}, {"repetition": 0.3}),
    (4, {"frequency_penalty": 1.5}, {"frequency": 1.5}),
    (3, {"frequency_penalty": -1.5}, {"frequency": -1.5}),
    (4, {"presence_penalty": 1.5}, {"presence": 1.5}),
    (3, {"presence_penalty": -1.0}, {"presence": -1.0}),
    (4, {"frequency_penalty": 0.5, "presence_penalty": 0.5, "repetition_penalty": 1.3},
     {"frequency": 0.5, "presence": 0.5, "repetition": 1.3}),
])
def test_penalties_match_a_plain_reference_and_change_the_output(b, kw, ref_kw):
    plain = penalised_reference(REPEATED, 24, bias=biased(b))
    expected = penalised_reference(REPEATED, 24, bias=biased(b), **ref_kw)
    assert expected != plain, "the penalty must matter for this prompt"
    assert run_one(engine(), REPEATED, greedy_with(b)).tokens[0] == plain
    assert run_one(engine(), REPEATED, greedy_with(b, **kw)).tokens[0] == expected


def test_penalty_signs_push_repetition_the_right_way():
    base3 = run_one(engine(), REPEATED, greedy_with(3)).tokens[0]
    base4 = run_one(engine(), REPEATED, greedy_with(4)).tokens[0]
    assert base4.count(4242) > 12  # the +4 bias alone makes greedy loop
    # Negative frequency / presence penalties reward tokens already generated: the output loops.
    for kw in ({"frequency_penalty": -1.5}, {"presence_penalty": -2.0}):
        toks = run_one(engine(), REPEATED, greedy_with(3, **kw)).tokens[0]
        assert repeats(toks) > repeats(base3) + 8, kw
    # Positive ones break the loop.
    for kw in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        toks = run_one(engine(), REPEATED, greedy_with(4, **kw)).tokens[0]
        assert toks.count(4242) < base4.count(4242) // 2 and repeats(toks) < repeats(base4), kw
    # A repetition penalty below 1 pulls the output towards prompt tokens, above 1 away from them.
    low = run_one(engine(), REPEATED, greedy_with(3, repetition_penalty=0.3)).tokens[0]
    high = run_one(engine(), REPEATED, greedy_with(4, repetition_penalty=1.8)).tokens[0]
    assert in_prompt(low) > in_prompt(base3)
    assert in_prompt(high) < in_prompt(base4)
