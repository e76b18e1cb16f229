"""One generation request from admission to its log record, shared by chat and completions.

A Run admits the request (or refuses it with 429), streams the engine's outputs, tracks the
time to first token and inter-token latency, and when it ends, however it ends, writes one usage
record and releases its slot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable

from fastapi.responses import JSONResponse, StreamingResponse

from ..engine.async_engine import EngineDeadError
from ..engine.engine import ContextLengthError, RequestOutput
from ..engine.params import ParamError, SamplingParams
from .errors import APIError
from .state import Serving
from .store import Generation

log = logging.getLogger(__name__)


def param_error(err: ParamError, prompt_param: str = "prompt") -> APIError:
    """The engine names the prompt "prompt"; chat requests call it "messages"."""
    code = "context_length_exceeded" if isinstance(err, ContextLengthError) else "invalid_parameter"
    param = prompt_param if err.param == "prompt" else err.param
    return APIError(400, str(err), param=param, code=code)


@dataclass
class Run:
    serving: Serving
    endpoint: str
    model: str
    key_name: str | None
    user: str | None
    prompt_ids: list[int]
    params: SamplingParams
    request_json: str | None = None
    prompt_param: str = "prompt"  # what the request calls its prompt, for error messages
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)
    completion_tokens: int = 0
    cached_tokens: int = 0
    ttft: float | None = None
    finish_reasons: dict[int, str] = field(default_factory=dict)
    texts: dict[int, list[str]] = field(default_factory=dict)
    status: int = 200
    _started: float = field(default_factory=time.monotonic)
    _last_token: float | None = None
    _admitted: bool = False

    @property
    def created(self) -> int:
        """The responses' `created` (whole seconds); the log keeps `created_at`, to the microsecond."""
        return int(self.created_at)

    def admit(self) -> None:
        """Validate against the engine and take a queue slot, before any response byte is sent
        (raises APIError 400 or 429). The slot is given back by `release`, exactly once."""
        _, engine = self.serving.require_ready()
        try:
            engine.engine.check_request(self.prompt_ids, self.params)
        except ParamError as err:
            raise param_error(err, self.prompt_param) from None
        self.serving.admit()
        self._admitted = True

    def release(self) -> None:
        if self._admitted:
            self._admitted = False
            self.serving.release()

    async def outputs(self) -> AsyncIterator[RequestOutput]:
        _, engine = self.serving.require_ready()
        try:
            # aclosing: leaving this generator early closes the engine stream at once (abort).
            async with aclosing(engine.generate(self.prompt_ids, self.params, self.id)) as stream:
                async for out in stream:
                    self._observe(out)
                    yield out
        except ParamError as err:
            self.status = 400
            raise param_error(err, self.prompt_param) from None
        except EngineDeadError as err:
            self.status = 503
            raise APIError(503, str(err), code="engine_stopped") from None
        except asyncio.CancelledError:
            self.status = 499  # the client went away
            raise
        except BaseException:
            self.status = 500
            raise
        finally:
            self.release()
            await self._record()

    def _observe(self, out: RequestOutput) -> None:
        now = time.monotonic()
        m = self.serving.metrics
        self.cached_tokens = out.cached_tokens
        for delta in out.deltas:
            n = len(delta.token_ids)
            if n:
                if self.ttft is None:
                    self.ttft = now - self._started
                    m.ttft.observe(self.ttft)
                elif self._last_token is not None:
                    m.itl.observe((now - self._last_token) / n)
                self._last_token = now
                self.completion_tokens += n
                m.generation_tokens.inc(n)
            if self.serving.config.log_content and delta.text:
                self.texts.setdefault(delta.index, []).append(delta.text)
            if delta.finish_reason:
                self.finish_reasons[delta.index] = delta.finish_reason

    async def _record(self) -> None:
        duration = time.monotonic() - self._started
        m = self.serving.metrics
        m.prompt_tokens.inc(len(self.prompt_ids))
        m.duration.observe(duration)
        reasons = sorted(set(self.finish_reasons.values()))
        completion = json.dumps(["".join(self.texts[i]) for i in sorted(self.texts)]) \
            if self.serving.config.log_content else None
        record = Generation(
            id=self.id, created=self.created_at, model=self.model, endpoint=self.endpoint, key_name=self.key_name,
            user=self.user, prompt_tokens=len(self.prompt_ids), completion_tokens=self.completion_tokens,
            cached_tokens=self.cached_tokens, ttft=self.ttft, duration=duration,
            finish_reason=",".join(reasons) or None, status=self.status,
            request_json=self.request_json if self.serving.config.log_content else None,
            completion_text=completion)
        try:
            await asyncio.shield(asyncio.to_thread(self.serving.store.record, record))
        except Exception:  # the answer was given; a failed log write must not turn it into an error
            log.exception("could not record generation %s", self.id)


class RunsResponse(StreamingResponse):
    """A streamed answer that gives back its runs' queue slots however it ends, even when the
    client leaves before the stream's first byte (the body generator then never starts)."""

    def __init__(self, body: AsyncIterator[str], runs: list[Run]) -> None:
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.runs = runs

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for run in self.runs:
                run.release()


async def complete_unless_disconnected(request, work: Awaitable[dict], runs: list[Run]) -> JSONResponse:
    """Await a non-streamed answer; cancel it if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(cancel_on_disconnect(request, task))
    try:
        return JSONResponse(await task)
    finally:
        watcher.cancel()
        for run in runs:
            run.release()


def admit_all(runs: list[Run]) -> None:
    """Admit every run or none."""
    try:
        for run in runs:
            run.admit()
    except BaseException:
        for run in runs:
            run.release()
        raise


async def cancel_on_disconnect(request, work: "asyncio.Future") -> None:
    """Cancel `work` if the HTTP client disconnects before it is done (non-streaming requests)."""
    while not work.done():
        if await request.is_disconnected():
            work.cancel()
            return
        await asyncio.sleep(0.25)
