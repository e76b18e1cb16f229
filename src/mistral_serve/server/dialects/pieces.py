"""One choice's engine outputs as a flat sequence of pieces: text, a tool call's start, a call's
argument text, the end. The dialects whose answer is a list of content blocks or output items
(Anthropic's messages, OpenAI's responses, Ollama's chat) render these; they never split calls
out of the text themselves.

A run yields one list of pieces per engine output (possibly empty: the first output also tells
the prompt's cached tokens, which some streams announce before any text).
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator, Union

from ...engine.sequence import TokenLogprob
from ..generation import Run
from ..tools import ChoiceOutput


@dataclass(frozen=True)
class Text:
    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)  # of the tokens behind this text


@dataclass(frozen=True)
class CallStart:
    index: int  # of the call in the answer
    id: str  # the call's id (9 characters: Mistral's form; dialects may prefix it)
    name: str


@dataclass(frozen=True)
class CallArguments:
    index: int
    text: str  # more of the call's arguments (JSON text)


@dataclass(frozen=True)
class Finished:
    reason: str  # the engine's: "stop" or "length" ("tool_calls" when calls were made)
    calls: list[dict] | None  # OpenAI tool_calls ({id, type, function: {name, arguments}}) or None


Piece = Union[Text, CallStart, CallArguments, Finished]


def _call_pieces(deltas: list[dict]) -> list[Piece]:
    out: list[Piece] = []
    for d in deltas:
        if "id" in d:
            out.append(CallStart(d["index"], d["id"], d["function"]["name"]))
        if d["function"].get("arguments"):
            out.append(CallArguments(d["index"], d["function"]["arguments"]))
    return out


async def choice_pieces(run: Run, choice: ChoiceOutput) -> AsyncIterator[list[Piece]]:
    """The pieces of a single-choice run, a list per engine output. A `Finished` piece ends it;
    a choice that ended in calls is recorded as finishing with "tool_calls"."""
    async with aclosing(run.outputs()) as outputs:
        async for out in outputs:
            batch: list[Piece] = []
            for d in out.deltas:
                text = choice.feed(d.text, d.token_ids)
                if text or d.logprobs:
                    batch.append(Text(text, list(d.logprobs)))
                batch += _call_pieces(choice.call_deltas())
                if d.finish_reason:
                    tail, calls = choice.finish()
                    if tail:
                        batch.append(Text(tail))
                    batch += _call_pieces(choice.closing_deltas(calls or []))
                    reason = d.finish_reason
                    if calls:
                        reason = run.finish_reasons[d.index] = "tool_calls"  # before the run's record is written
                    batch.append(Finished(reason, calls))
            yield batch


@dataclass
class Collected:
    """A whole answer gathered from its pieces (for the dialects' non-streamed replies)."""

    text: str
    logprobs: list[TokenLogprob]
    reason: str | None
    calls: list[dict] | None


async def collect(run: Run, choice: ChoiceOutput) -> Collected:
    texts: list[str] = []
    logprobs: list[TokenLogprob] = []
    reason, calls = None, None
    async with aclosing(choice_pieces(run, choice)) as batches:
        async for batch in batches:
            for p in batch:
                if isinstance(p, Text):
                    texts.append(p.text)
                    logprobs += p.logprobs
                elif isinstance(p, Finished):
                    reason, calls = p.reason, p.calls
    return Collected("".join(texts), logprobs, reason, calls)
