"""Constrained decoding in the engine (engine/grammar.py) and the tool-call plumbing (server/tools.py),
on a tiny random model: masks, the compile cache, triggers, the ending planner, and output parsing."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import torch

from support import engine_helpers as h
from mistral_serve.bench.engine_bench import MaskTimer
from mistral_serve.config import EngineConfig
from mistral_serve.engine.engine import LLMEngine
from mistral_serve.engine.grammar import GrammarCompiler, GrammarError, new_bitmask
from mistral_serve.engine.params import GuidedDecoding, SamplingParams
from mistral_serve.server.errors import APIError
from mistral_serve.server.tools import (ChoiceOutput, ToolPlan, calls_schema, mistral_call_id, parse_calls,
                                        plan_tools)
from mistral_serve.tokenizer import Tokenizer, bundled_tokenizer_file

TOOL_CALLS = 5
PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1},
    "address": {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["zip"]}}, "required": ["name", "age", "tags", "address"]}


@pytest.fixture(scope="module")
def compiler() -> GrammarCompiler:
    tok = h.tokenizer()
    return GrammarCompiler(tok.grammar_vocab(), h.ARGS.vocab_size, tok.eos_id)


def engine(**config) -> LLMEngine:
    return LLMEngine(h.model(), h.tokenizer(), EngineConfig(kv_cache_memory="64MiB", **config))


def run(eng: LLMEngine, requests: list[tuple[list[int], SamplingParams]]) -> list[tuple[list[int], str, str]]:
    """(token ids, text, finish reason) of each request, all decoded together."""
    ids = [eng.add_request(p, params) for p, params in requests]
    tokens = {i: [] for i in ids}
    texts = {i: "" for i in ids}
    reasons = {}
    while eng.has_unfinished():
        for out in eng.step():
            for d in out.deltas:
                tokens[out.request_id] += d.token_ids
                texts[out.request_id] += d.text
                if d.finish_reason:
                    reasons[out.request_id] = d.finish_reason
    return [(tokens[i], texts[i], reasons[i]) for i in ids]


def schema_spec(schema: dict) -> GuidedDecoding:
    return GuidedDecoding("json_schema", json.dumps(schema))


# ---- compiling --------------------------------------------------------------------------------------

def test_compiled_grammars_are_cached_by_spec(compiler):
    spec = schema_spec({"type": "object", "properties": {"cache_test": {"type": "integer"}}})
    hits, misses = compiler.hits, compiler.misses
    first = compiler.compile(spec)
    assert compiler.compile(GuidedDecoding("json_schema", spec.value)) is first
    assert (compiler.hits - hits, compiler.misses - misses) == (1, 1)


@pytest.mark.parametrize("spec,contains", [
    (GuidedDecoding("regex", "(?<=a)b", "guided_regex"), "Lookbehind"),
    (GuidedDecoding("json_schema", '{"type": "foo"}'), "foo"),
    (GuidedDecoding("grammar", "root ::= missing", "guided_grammar"), "guided_grammar"),
])
def test_uncompilable_constraints_raise_grammar_error(compiler, spec, contains):
    with pytest.raises(GrammarError) as err:
        compiler.compile(spec)
    assert contains in str(err.value) and err.value.param == spec.param
    assert "/project/" not in str(err.value)  # xgrammar's source location is cut off


# ---- decoding -----------------------------------------------------------------------------------------

def test_schema_output_validates_and_ends_with_stop():
    eng = engine(max_num_seqs=8)
    spec = schema_spec(PERSON)
    with MaskTimer(eng) as masks:
        results = run(eng, [(h.prompt(8, i), SamplingParams(temperature=1.0, seed=i, max_tokens=60 + 10 * i,
                                                            guided=spec)) for i in range(6)])
    for _, text, reason in results:
        jsonschema.validate(json.loads(text), PERSON)
        assert reason == "stop"
    assert masks.rows > 0 and masks.seconds > 0


def test_unconstrained_neighbours_are_unchanged():
    # A greedy request decodes the same tokens alone and next to constrained ones.
    eng = engine(max_num_seqs=8)
    plain = (h.prompt(12, 99), SamplingParams(temperature=0, max_tokens=16))
    alone = run(eng, [plain])[0][0]
    mixed = run(eng, [plain] + [(h.prompt(9, i), SamplingParams(seed=i, max_tokens=40,
                                                               guided=GuidedDecoding("json_object")))
                                for i in range(3)])
    assert mixed[0][0] == alone == h.reference(plain[0], 16)
    for _, text, _ in mixed[1:]:
        assert isinstance(json.loads(text), dict)


def test_regex_choice_and_grammar():
    eng = engine()
    results = run(eng, [
        (h.prompt(6, 1), SamplingParams(seed=1, max_tokens=20, guided=GuidedDecoding("regex", "[A-Z]{2}-[0-9]{3}"))),
        (h.prompt(6, 2), SamplingParams(seed=2, max_tokens=20,
                                        guided=GuidedDecoding("choice", json.dumps(["left", "right"])))),
        (h.prompt(6, 3), SamplingParams(seed=3, max_tokens=30,
                                        guided=GuidedDecoding("grammar", 'root ::= "(" [a-c]+ ")"'))),
    ])
    assert re.fullmatch("[A-Z]{2}-[0-9]{3}", results[0][1])
    assert results[1][1] in ("left", "right")
    assert re.fullmatch(r"\([a-c]+\)", results[2][1])


def test_a_tight_budget_still_parses():
    # The ending planner closes the object before max_tokens cuts it, whatever the model wanted.
    # PERSON's shortest ending is 34 tokens; below that nothing can save the answer.
    eng = engine()
    for max_tokens in (36, 45, 60):
        _, text, reason = run(eng, [(h.prompt(8, max_tokens), SamplingParams(seed=0, max_tokens=max_tokens,
                                                                             guided=schema_spec(PERSON)))])[0]
        jsonschema.validate(json.loads(text), PERSON)
        assert reason == "stop"
    _, text, reason = run(eng, [(h.prompt(8, 1), SamplingParams(seed=0, max_tokens=20, guided=schema_spec(PERSON)))])[0]
    assert reason == "length"


def test_min_tokens_does_not_fight_the_grammar():
    eng = engine()
    _, text, reason = run(eng, [(h.prompt(6, 4), SamplingParams(seed=0, max_tokens=40, min_tokens=30,
                                                                guided=GuidedDecoding("choice", '["ok"]')))])[0]
    assert text == "ok" and reason == "stop"


def test_trigger_starts_the_grammar_and_required_forces_it(compiler):
    schema = calls_schema([_function("f", {"type": "object", "properties": {"x": {"type": "integer"}},
                                            "required": ["x"]})], parallel=False)
    spec = GuidedDecoding("json_schema", json.dumps(schema), "tools", trigger_token=TOOL_CALLS, trigger_required=True)
    tokens, text, reason = run(engine(), [(h.prompt(6, 5), SamplingParams(seed=5, max_tokens=40, guided=spec))])[0]
    assert tokens[0] == TOOL_CALLS and reason == "stop"
    calls = json.loads(text)
    assert len(calls) == 1 and calls[0]["name"] == "f" and isinstance(calls[0]["arguments"]["x"], int)
    # auto: free text until the model writes the trigger (pushed by a logit bias here).
    auto = GuidedDecoding("json_schema", json.dumps(schema), "tools", trigger_token=TOOL_CALLS)
    free = run(engine(), [(h.prompt(6, 6), SamplingParams(seed=6, max_tokens=8, guided=auto))])[0]
    assert TOOL_CALLS not in free[0]
    biased = run(engine(), [(h.prompt(6, 6), SamplingParams(seed=6, max_tokens=40, guided=auto,
                                                            logit_bias={TOOL_CALLS: 100}))])[0]
    assert biased[0][0] == TOOL_CALLS and json.loads(biased[1])[0]["name"] == "f"


def test_banned_tokens_are_never_sampled():
    tokens = run(engine(), [(h.prompt(6, 7), SamplingParams(seed=1, max_tokens=6, logit_bias={TOOL_CALLS: 100},
                                                            banned_token_ids=[TOOL_CALLS]))])[0][0]
    assert TOOL_CALLS not in tokens


def test_planned_endings(compiler):
    bitmask = new_bitmask(1, h.ARGS.vocab_size)
    tok = h.tokenizer()
    for regex, prefix, ending in [("[a-z]+@[a-z]+\\.com", "abc", "@a.com"), ("(ab)+c", "", "abc"),
                                  ("a{3,}b", "", "aaab")]:
        state = compiler.state(GuidedDecoding("regex", regex))
        assert state.matcher.accept_string(prefix)
        assert tok.decode(state.plan_ending(bitmask, 0, 100)) == ending
    state = compiler.state(schema_spec(PERSON))
    text = tok.decode(state.plan_ending(bitmask, 0, 500))
    jsonschema.validate(json.loads(text), PERSON)
    # The ending in the fewest tokens is the same bytes.
    chars = state.plan_ending(bitmask, 0, 500)
    packed = compiler.tokenize(b"".join(compiler.vocab_bytes(t) for t in chars))
    assert tok.decode(packed) == text and len(packed) < len(chars)


# ---- tools ------------------------------------------------------------------------------------------

class _Fn:
    def __init__(self, name, parameters):
        self.name, self.parameters = name, parameters


def _function(name, parameters):
    return _Fn(name, parameters)


def test_call_ids_map_to_mistral_form():
    assert mistral_call_id("abcDEF123") == "abcDEF123"
    mapped = mistral_call_id("call_Xyz_0123456789")
    assert re.fullmatch("[a-zA-Z0-9]{9}", mapped) and mapped == mistral_call_id("call_Xyz_0123456789")
    assert mapped != mistral_call_id("call_Xyz_0123456788")


def test_calls_schema_rebases_refs(compiler):
    params = {"$defs": {"unit": {"enum": ["c", "f"]}}, "type": "object",
              "properties": {"u": {"$ref": "#/$defs/unit"}}, "required": ["u"]}
    schema = calls_schema([_function("a", params), _function("b", None)], parallel=True)
    assert schema["items"]["anyOf"][0]["properties"]["arguments"]["properties"]["u"]["$ref"] == "#/$defs/f0_unit"
    assert schema["$defs"] == {"f0_unit": {"enum": ["c", "f"]}}
    compiler.compile(schema_spec(schema))
    jsonschema.validate([{"name": "a", "arguments": {"u": "c"}}, {"name": "b", "arguments": {}}], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"name": "a", "arguments": {"u": "k"}}], schema)


@pytest.mark.parametrize("text,ok", [
    ('[{"name": "f", "arguments": {"x": 1}}]', True),
    ('[{"name": "f", "arguments": "{\\"x\\": 1}"}]', True),  # arguments written as a string
    ('{"name": "f", "arguments": {"x": 1}}', True),  # a bare object
    ('[{"name": "g", "arguments": {}}]', False),  # unknown function
    ('[{"name": "f", "arguments": {"x": 1}', False),  # cut short
    ("not json", False), ("[]", False),
])
def test_parse_calls(text, ok):
    calls = parse_calls(text, {"f"})
    assert (calls is not None) == ok
    if ok:
        assert calls[0]["function"] == {"name": "f", "arguments": '{"x": 1}'}
        assert re.fullmatch("[a-zA-Z0-9]{9}", calls[0]["id"])


def test_choice_output_splits_content_and_calls():
    tok = h.tokenizer()
    plan = ToolPlan(names={"f"}, trigger=TOOL_CALLS)
    head = tok.encode("Let me check.", bos=False)
    body = tok.encode('[{"name": "f", "arguments": {"x": 1}}]', bos=False)
    out = ChoiceOutput(tok, plan)
    detok = tok.detokenizer()
    streamed = "".join(out.feed(detok.add(t), [t]) for t in head)
    # The trigger arrives with the first tokens of the call: their text is never content.
    streamed += out.feed(detok.add(TOOL_CALLS) + "".join(detok.add(t) for t in body[:3]), [TOOL_CALLS] + body[:3])
    streamed += out.feed("x", body[3:])
    tail, calls = out.finish()
    assert streamed + tail == "Let me check." and calls[0]["function"]["name"] == "f"
    # A malformed call comes back as content, never lost.
    out = ChoiceOutput(tok, plan)
    out.feed("", [TOOL_CALLS] + tok.encode('[{"name": "f", "argu', bos=False))
    tail, calls = out.finish()
    assert calls is None and '"argu' in tail


def test_v1_tokenizer_refuses_tools():
    v1 = Tokenizer.from_file(bundled_tokenizer_file("v1"))

    class Body:
        tools = [type("T", (), {"function": _function("f", None)})()]
        tool_choice = None
        parallel_tool_calls = True

    with pytest.raises(APIError) as err:
        plan_tools(Body, v1)
    assert err.value.param == "tools" and "v3" in str(err.value)


def test_masks_are_bit_exact(compiler):
    # The grammar's mask, applied to logits, leaves exactly the allowed tokens finite.
    state = compiler.state(GuidedDecoding("choice", json.dumps(["yes", "no"])))
    bitmask = new_bitmask(2, h.ARGS.vocab_size)
    assert state.fill(bitmask, 1, remaining=100)
    logits = torch.zeros(2, h.ARGS.vocab_size)
    from mistral_serve.engine.grammar import apply_bitmask
    apply_bitmask(logits, bitmask, [1])
    finite = torch.isfinite(logits[1]).nonzero().view(-1).tolist()
    tok = h.tokenizer()
    assert finite and all("yes".startswith(tok.decode([t])) or "no".startswith(tok.decode([t])) for t in finite)
    assert torch.isfinite(logits[0]).all()


@pytest.mark.parametrize("string", [{"type": "string"}, {"type": "string", "maxLength": 8},
                                    {"type": ["string", "null"], "minLength": 1}])
def test_json_strings_refuse_control_characters(compiler, string):
    # JSON forbids raw U+0000-U+001F in strings; xgrammar lets them into length-bounded ones
    # unless the grammar is corrected (engine/grammar.py, _no_control_characters).
    schema = {"type": "object", "properties": {"a": string}, "required": ["a"]}
    state = compiler.state(schema_spec(schema))
    assert not state.matcher.accept_string('{"a": "x\x06')
    state = compiler.state(schema_spec(schema))
    assert state.matcher.accept_string('{"a": "xy"}')


def test_call_scanner_follows_a_list_as_it_is_written():
    from mistral_serve.server.tool_stream import CallScanner

    text = (' [{"name": "get_weather", "arguments": {"city": "Pa\\"r{is", "n": [1, {"x": 2}]}, "id": "abcdefghi"}, '
            '{"name": "add", "arguments": {"a": 1, "b": 2}}]')
    scanner = CallScanner()
    seen = []
    for end in range(1, len(text) + 1):  # one character at a time, as a stream may cut it
        scanner.scan(text[:end])
        seen.append([c.name for c in scanner.calls])
    assert [c.name for c in scanner.calls] == ["get_weather", "add"]
    assert json.loads(scanner.args_text(text, 0)) == {"city": 'Pa"r{is', "n": [1, {"x": 2}]}
    assert json.loads(scanner.args_text(text, 1)) == {"a": 1, "b": 2}
    assert [None] in seen and ["get_weather", None] in seen  # names appear once their strings close


def test_choice_output_streams_calls_in_pieces():
    tok = h.tokenizer()
    out = ChoiceOutput(tok, ToolPlan(names={"f"}, trigger=TOOL_CALLS))
    body = tok.encode('[{"name": "f", "arguments": {"x": 12, "y": "ab"}}]', bos=False)
    deltas = []
    out.feed("", [TOOL_CALLS])
    for t in body:
        out.feed("", [t])
        deltas += out.call_deltas()
    _, calls = out.finish()
    deltas += out.closing_deltas(calls)
    assert deltas[0]["function"] == {"name": "f", "arguments": ""} and deltas[0]["id"] == calls[0]["id"]
    pieces = [d["function"]["arguments"] for d in deltas[1:]]
    assert len(pieces) > 1 and json.loads("".join(pieces)) == {"x": 12, "y": "ab"}


def test_vocab_bytes_of_every_token(compiler):
    # Tokens that share their bytes with another (the byte-fallback `<0x22>` and `"`) still have
    # theirs: the planner may take either.
    tok = h.tokenizer()
    quote = [i for i in range(tok.vocab_size) if not tok.is_control(i) and tok.token_bytes(i) == b'"']
    assert len(quote) == 2
    assert all(compiler.vocab_bytes(i) == b'"' for i in quote)
