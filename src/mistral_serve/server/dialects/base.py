"""What every dialect's answer shares: SSE framing, the streamed response that gives back its
queue slots, the whole answer that stops when its client leaves, and the request flow.

A dialect is a translation in (`prepare`: body -> Runs) and a renderer out (`complete`: the whole
answer; `stream`: its events); `Dialect.respond` runs the same steps for all of them.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from ..errors import bad_request
from ..generation import Run, admit_all
from ..state import Serving

M = TypeVar("M", bound=BaseModel)

# Line breaks to many clients (str.splitlines, httpx's iter_lines) though not to SSE: escaped, so
# that no client sees an event cut in two. JSON strings may spell any character as \uXXXX.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def sse(payload: dict | str, event: str | None = None) -> str:
    """One server-sent event; `event` names it (Anthropic's streams do, OpenAI's do not)."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False).translate(_LINE_BREAKS)
    return (f"event: {event}\n" if event else "") + f"data: {text}\n\n"


def json_line(payload: dict) -> str:
    """One line of a newline-delimited JSON stream (Ollama's), its line breaks escaped as in sse."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).translate(_LINE_BREAKS) + "\n"


class RunsResponse(StreamingResponse):
    """A streamed answer that gives back its runs' queue slots however it ends, even when the
    client leaves before the stream's first byte (the body generator then never starts)."""

    def __init__(self, body: AsyncIterator[str], runs: list[Run], media_type: str = "text/event-stream") -> None:
        super().__init__(body, media_type=media_type,
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.runs = runs

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for run in self.runs:
                run.release()


async def complete_unless_disconnected(request: Request, work: Awaitable[dict], runs: list[Run]) -> JSONResponse:
    """Await a non-streamed answer; cancel it if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(cancel_on_disconnect(request, task))
    try:
        return JSONResponse(await task)
    finally:
        watcher.cancel()
        for run in runs:
            run.release()


async def cancel_on_disconnect(request: Request, work: "asyncio.Future") -> None:
    """Cancel `work` if the HTTP client disconnects before it is done (non-streaming requests)."""
    while not work.done():
        if await request.is_disconnected():
            work.cancel()
            return
        await asyncio.sleep(0.25)


def translated(model: type[M], fields: dict) -> M:
    """The OpenAI request (chat or completions) another dialect's body translates into, validated
    as that path validates a body: what the dialect's own model let through and this one does
    not is a 400 naming the field."""
    try:
        return model.model_validate(fields)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e.get("loc", ()))
        raise bad_request(f"Invalid value for {where}: {e.get('msg', 'invalid')}", param=where) from None


@dataclass
class Job:
    """A request made ready for the engine: its body and its runs (one per prompt)."""

    body: Any
    runs: list[Run]


class Dialect:
    """One API's translation in and renderer out, over the generation service."""

    media_type = "text/event-stream"  # of the streamed answer

    def __init__(self, serving: Serving) -> None:
        self.serving = serving

    def prepare(self, body, endpoint: str, key_name: str | None) -> Job:
        """Validate the body and build its runs (400 naming the field); runs on a worker thread."""
        raise NotImplementedError

    async def complete(self, job: Job) -> dict:
        raise NotImplementedError

    def stream(self, job: Job) -> AsyncIterator[str]:
        raise NotImplementedError

    async def respond(self, body, request: Request, key_name: str | None):
        # Off the event loop: a chat template over a long conversation, tokenizing a batch and
        # compiling a grammar take a while, and the loop serves every other client meanwhile.
        job = await asyncio.to_thread(self.prepare, body, request.url.path, key_name)
        admit_all(job.runs)
        if body.stream:
            return RunsResponse(self.stream(job), job.runs, self.media_type)
        return await complete_unless_disconnected(request, self.complete(job), job.runs)
