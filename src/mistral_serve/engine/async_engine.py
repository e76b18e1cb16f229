"""AsyncEngine: the LLMEngine on a background thread, one async stream per request; the only
surface the server sees (submit, abort, check, context length, grammar compile, statistics).

The model's forward passes are long, blocking calls; they run on one engine thread so the asyncio
event loop (the HTTP server) stays responsive. Requests and aborts cross into that thread through
a queue read before every step; outputs cross back with `call_soon_threadsafe`. Leaving a stream
early (client gone, task cancelled) aborts its request, which frees its blocks before the next step.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import AsyncIterator

from ..config import EngineConfig
from .engine import ContextLengthError, LLMEngine, RequestOutput
from .grammar import GrammarError
from .params import GuidedDecoding, SamplingParams

# What a client of the engine needs besides AsyncEngine, so that it imports this module alone.
__all__ = ["AsyncEngine", "CacheStats", "ContextLengthError", "EngineDeadError", "GrammarError", "QueueStats",
           "RequestOutput"]

log = logging.getLogger(__name__)


class EngineDeadError(RuntimeError):
    """The engine thread has stopped; no request can be served."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    used: int  # KV blocks in use
    total: int  # KV blocks in all
    hit_rate: float  # prompt tokens served from the prefix cache, as a fraction


@dataclass(frozen=True, slots=True)
class QueueStats:
    waiting: int  # requests not yet scheduled
    running: int  # requests being generated


@dataclass(slots=True)
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue


class AsyncEngine:
    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine  # for tests and tools; the server uses only the methods below
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._streams: dict[str, _Stream] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mistral-serve-engine", daemon=True)
        self._thread.start()

    @classmethod
    def build(cls, model, tokenizer, config: EngineConfig) -> AsyncEngine:
        """An LLMEngine for this model and tokenizer, started on its own thread."""
        return cls(LLMEngine(model, tokenizer, config))

    # ---- the client side (event loop) ---------------------------------------------------------
    @property
    def max_model_len(self) -> int:
        """The model's context length, in tokens."""
        return self.engine.max_model_len

    def check(self, prompt_ids: list[int], params: SamplingParams) -> None:
        """Raise ParamError (ContextLengthError) if the engine would refuse this request."""
        self.engine.check_request(prompt_ids, params)

    def compile_grammar(self, spec: GuidedDecoding) -> None:
        """Compile (and so cache) a constraint's grammar; raises GrammarError. Thread-safe: the
        server compiles ahead, off the event loop, so no engine step waits on a compile."""
        self.engine.grammars.compile(spec)

    def cache_stats(self) -> CacheStats:
        blocks = self.engine.blocks
        return CacheStats(blocks.num_used, blocks.num_blocks, blocks.hit_rate)

    def queue_stats(self) -> QueueStats:
        return QueueStats(self.engine.num_waiting, self.engine.num_running)

    async def generate(self, prompt_ids: list[int], params: SamplingParams,
                       request_id: str | None = None) -> AsyncIterator[RequestOutput]:
        """Stream a request's outputs. An invalid request raises ParamError before the first
        output (from the engine's own check at admission; callers that want it sooner `check`)."""
        if self._stopping or not self._thread.is_alive():
            raise EngineDeadError("the engine is shutting down")
        request_id = request_id or uuid.uuid4().hex
        if request_id in self._streams:
            raise ValueError(f"request id {request_id!r} is already running")
        stream = _Stream(asyncio.get_running_loop(), asyncio.Queue())
        self._streams[request_id] = stream
        self._send(("add", request_id, list(prompt_ids), params))
        finished = False
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            self._streams.pop(request_id, None)
            if not finished:
                self._send(("abort", request_id))

    def abort(self, request_id: str) -> None:
        self._send(("abort", request_id))

    def _send(self, message: tuple) -> None:
        self._inbox.put(message)
        self._wake.set()

    def shutdown(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    # ---- the engine thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            self._drain_inbox()
            if not self.engine.has_unfinished():
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
            except Exception as err:  # never let one bad step take the server down
                log.exception("engine step failed; failing the requests in flight")
                self._fail_all(err)
                continue
            for out in outputs:
                self._deliver(out.request_id, out if out.error is None else out.error)
        self._fail_all(EngineDeadError("the engine was shut down"), waiting_too=True)

    def _drain_inbox(self) -> None:
        while True:
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return
            if message[0] == "add":
                _, request_id, prompt_ids, params = message
                if request_id not in self._streams:
                    continue  # the client left before the request was admitted
                try:
                    self.engine.add_request(prompt_ids, params, request_id)
                except Exception as err:
                    self._deliver(request_id, err)
            else:
                self.engine.abort(message[1])

    def _deliver(self, request_id: str, item: RequestOutput | BaseException) -> None:
        stream = self._streams.get(request_id)
        if stream is None:
            return
        try:
            stream.loop.call_soon_threadsafe(stream.queue.put_nowait, item)
        except RuntimeError:  # the client's event loop is closed
            self.engine.abort(request_id)

    def _fail_all(self, err: BaseException, waiting_too: bool = False) -> None:
        """End the requests in the engine (and, at shutdown, those not yet admitted) with err."""
        for request_id in list(self._streams if waiting_too else self.engine.requests):
            self.engine.abort(request_id)
            self._deliver(request_id, err)
