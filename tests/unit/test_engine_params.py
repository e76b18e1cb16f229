"""SamplingParams validation and parse_memory / EngineConfig checks."""

import math

import pytest

from mistral_serve.config import EngineConfig, parse_memory
from mistral_serve.engine.params import ParamError, SamplingParams

NAN = math.nan

INVALID = [
    ("n", 0), ("n", 129), ("n", -1),
    ("temperature", -0.1), ("temperature", 2.01), ("temperature", NAN),
    ("top_p", 0.0), ("top_p", 1.01), ("top_p", -0.5), ("top_p", NAN),
    ("top_k", -2), ("top_k", -100),
    ("min_p", -0.01), ("min_p", 1.01), ("min_p", NAN),
    ("presence_penalty", 2.01), ("presence_penalty", -2.01), ("presence_penalty", NAN),
    ("frequency_penalty", 2.01), ("frequency_penalty", -2.01), ("frequency_penalty", NAN),
    ("repetition_penalty", 0.0), ("repetition_penalty", -1.0), ("repetition_penalty", 10.01),
    ("repetition_penalty", NAN),
    ("logit_bias", {-1: 1.0}), ("logit_bias", {"5": 1.0}), ("logit_bias", {5: 100.5}),
    ("logit_bias", {5: -100.5}), ("logit_bias", {5: NAN}),
    ("stop", ["x"] * 17), ("stop", [""]), ("stop", ["ok", 5]),
    ("stop_token_ids", [-1]), ("stop_token_ids", ["2"]),
    ("max_tokens", 0), ("max_tokens", -5),
    ("min_tokens", -1),
    ("top_logprobs", -1), ("top_logprobs", 21),
    ("seed", 2**64), ("seed", -(2**63) - 1),
]


@pytest.mark.parametrize("name,value", INVALID, ids=[f"{n}={v!r}"[:40] for n, v in INVALID])
def test_invalid_value_raises_param_error_naming_it(name, value):
    with pytest.raises(ParamError) as info:
        SamplingParams(**{name: value})
    assert info.value.param == name
    assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_min_tokens_above_max_tokens_names_min_tokens():
    with pytest.raises(ParamError) as info:
        SamplingParams(max_tokens=3, min_tokens=4)
    assert info.value.param == "min_tokens"
    SamplingParams(max_tokens=4, min_tokens=4)
    SamplingParams(min_tokens=1000)  # no max_tokens: up to the context end


VALID_EDGES = [
    ("n", 1), ("n", 128), ("temperature", 0.0), ("temperature", 2.0), ("top_p", 1.0), ("top_p", 1e-9),
    ("top_k", -1), ("top_k", 0), ("top_k", 1), ("min_p", 0.0), ("min_p", 1.0),
    ("presence_penalty", -2.0), ("presence_penalty", 2.0), ("frequency_penalty", -2.0),
    ("frequency_penalty", 2.0), ("repetition_penalty", 10.0), ("repetition_penalty", 0.01),
    ("logit_bias", {0: -100.0, 7: 100.0}), ("stop", ["x"] * 16), ("stop_token_ids", [0, 2]),
    ("max_tokens", 1), ("min_tokens", 0), ("top_logprobs", 0), ("top_logprobs", 20),
    ("seed", 0), ("seed", -(2**63)), ("seed", 2**64 - 1),
]


@pytest.mark.parametrize("name,value", VALID_EDGES, ids=[f"{n}={v!r}"[:40] for n, v in VALID_EDGES])
def test_boundary_values_are_accepted(name, value):
    SamplingParams(**{name: value})


def test_greedy_property():
    assert SamplingParams(temperature=0).greedy
    assert SamplingParams(temperature=1.0, top_k=1).greedy
    assert not SamplingParams(temperature=1.0).greedy
    assert not SamplingParams(temperature=0.7, top_k=2).greedy


def test_check_vocab_rejects_ids_outside_the_vocabulary():
    SamplingParams(logit_bias={32767: 1.0}, stop_token_ids=[32767]).check_vocab(32768)
    with pytest.raises(ParamError) as info:
        SamplingParams(logit_bias={32768: 1.0}).check_vocab(32768)
    assert info.value.param == "logit_bias"
    with pytest.raises(ParamError) as info:
        SamplingParams(stop_token_ids=[40000]).check_vocab(32768)
    assert info.value.param == "stop_token_ids"


@pytest.mark.parametrize("spec,expected", [
    ("4GiB", 4 * 1024**3), ("512MB", 512 * 1000**2), ("2g", 2 * 1000**3), ("1000000", 1_000_000),
    ("64 mib", 64 * 1024**2), (" 1.5KiB ", 1536), ("100kb", 100_000), ("3b", 3), ("1TiB", 1024**4),
    ("1e9", 10**9), ("2048", 2048),
])
def test_parse_memory_sizes(spec, expected):
    value = parse_memory(spec)
    assert value == expected
    assert isinstance(value, int)


@pytest.mark.parametrize("spec,expected", [("0.3", 0.3), ("0.9", 0.9), ("1", 1.0), (".5", 0.5)])
def test_parse_memory_fractions(spec, expected):
    value = parse_memory(spec)
    assert isinstance(value, float)
    assert value == pytest.approx(expected)


@pytest.mark.parametrize("spec", ["", "abc", "GiB", "0", "-1", "-2GiB", "4XB", "4 G B x", "0MB", "1.2.3"])
def test_parse_memory_rejects_garbage(spec):
    with pytest.raises(ValueError):
        parse_memory(spec)


def test_engine_config_validates():
    with pytest.raises(ValueError):
        EngineConfig(kv_cache_memory="lots")
    with pytest.raises(ValueError):
        EngineConfig(block_size=0)
    with pytest.raises(ValueError):
        EngineConfig(max_num_batched_tokens=0)
    with pytest.raises(ValueError):
        EngineConfig(max_num_seqs=0)
    with pytest.raises(ValueError):
        EngineConfig(max_model_len=1)
    EngineConfig(kv_cache_memory="0.5", block_size=1, max_model_len=2)
