"""Tool-call ids (server/tools.py): every call the server returns has a fresh 9-character id of
its own, on the non-streamed path (parse_calls) and on the streamed one (ChoiceOutput's deltas),
whatever id the model wrote; and a conversation that sends them back keeps them paired."""

from __future__ import annotations

import re

from support import engine_helpers as h
from mistral_serve.server.tools import ChoiceOutput, ToolPlan, map_call_ids, new_call_id, parse_calls

TOOL_CALLS = 5  # `[TOOL_CALLS]` in the v3 vocabulary
MISTRAL_ID = re.compile(r"[a-zA-Z0-9]{9}")
# Two calls, each with the id a model tends to write (the demo wrote 0aA120aA1 in 3 of 4 requests).
WRITTEN = ('[{"name": "f", "arguments": {"x": 1}, "id": "0aA120aA1"}, '
           '{"name": "f", "arguments": {"x": 2}, "id": "0aA120aA1"}]')


def test_new_call_ids_are_mistral_ids_and_do_not_repeat():
    ids = [new_call_id() for _ in range(10_000)]
    assert all(MISTRAL_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    # All 62 characters are drawn, in every position (a fixed or biased position would show here).
    for position in range(9):
        assert len({i[position] for i in ids}) == 62


def test_non_streamed_calls_get_fresh_ids_not_the_written_ones():
    seen = []
    for _ in range(20):
        calls = parse_calls(WRITTEN, {"f"})
        assert [c["function"]["arguments"] for c in calls] == ['{"x": 1}', '{"x": 2}']
        seen += [c["id"] for c in calls]
    assert "0aA120aA1" not in seen
    assert all(MISTRAL_ID.fullmatch(i) for i in seen) and len(set(seen)) == len(seen)


def stream_calls(tokenizer, text: str) -> tuple[list[dict], list[dict]]:
    """The tool-call deltas of a stream that writes `[TOOL_CALLS]` then `text` token by token, and
    the final calls."""
    out = ChoiceOutput(tokenizer, ToolPlan(names={"f"}, trigger=TOOL_CALLS))
    deltas = []
    out.feed("", [TOOL_CALLS])
    for t in tokenizer.encode(text, bos=False):
        out.feed("", [t])
        deltas += out.call_deltas()
    _, calls = out.finish()
    return deltas + out.closing_deltas(calls), calls


def test_streamed_calls_get_fresh_ids_that_match_the_final_calls():
    tok = h.tokenizer()
    seen = []
    for _ in range(5):
        deltas, calls = stream_calls(tok, WRITTEN)
        announced = [d["id"] for d in deltas if "id" in d]
        assert announced == [c["id"] for c in calls] and len(calls) == 2
        seen += announced
    assert "0aA120aA1" not in seen
    assert all(MISTRAL_ID.fullmatch(i) for i in seen) and len(set(seen)) == len(seen)


def test_calls_announced_only_at_the_end_get_fresh_ids_too():
    # A stream that ends before a call was announced (its name is written in the last delta):
    # the closing deltas announce it with the id parse_calls gave it.
    tok = h.tokenizer()
    out = ChoiceOutput(tok, ToolPlan(names={"f"}, trigger=TOOL_CALLS))
    out.feed("", [TOOL_CALLS] + tok.encode(WRITTEN, bos=False))
    _, calls = out.finish()
    deltas = out.closing_deltas(calls)
    announced = [d["id"] for d in deltas if "id" in d]
    assert announced == [c["id"] for c in calls] and len(set(announced)) == 2 and "0aA120aA1" not in announced


def test_returned_ids_come_back_paired():
    calls = parse_calls(WRITTEN, {"f"})
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": None, "tool_calls": calls},
               *({"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in calls)]
    mapped = map_call_ids(history)
    # The server's own ids are Mistral ids already: they reach the prompt unchanged, each result
    # paired with its call.
    assert [c["id"] for c in mapped[1]["tool_calls"]] == [c["id"] for c in calls]
    assert [m["tool_call_id"] for m in mapped[2:]] == [c["id"] for c in calls]
    # Prefixed as the Responses and Anthropic APIs return them, they still pair up, one id each.
    for prefix in ("call_", "toolu_"):
        prefixed = [{**m, "tool_calls": [{**c, "id": prefix + c["id"]} for c in m["tool_calls"]]}
                    if m.get("tool_calls") else
                    {**m, "tool_call_id": prefix + m["tool_call_id"]} if "tool_call_id" in m else m
                    for m in history]
        mapped = map_call_ids(prefixed)
        call_ids = [c["id"] for c in mapped[1]["tool_calls"]]
        assert [m["tool_call_id"] for m in mapped[2:]] == call_ids and len(set(call_ids)) == 2
        assert all(MISTRAL_ID.fullmatch(i) for i in call_ids)
