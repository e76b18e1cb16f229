"""The generation service, shared by every dialect: prompt ids + SamplingParams (+ grammar) in,
one stream of engine outputs out, with usage and one log record per request.

A Run admits the request (or refuses it with 400 or 429), streams the engine's outputs, tracks
the time to first token and inter-token latency, and when it ends, however it ends, writes one
usage record and releases its slot. A dialect (server/dialects/) turns its body into Runs and the
outputs into its own JSON or events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator

from ..engine.async_engine import ContextLengthError, EngineDeadError, RequestOutput
from ..engine.params import ParamError, SamplingParams
from ..tokenizer import Tokenizer
from .errors import APIError
from .guided import compile_checked
from .state import Serving
from .store import Generation

log = logging.getLogger(__name__)

# The demo writes random text until the end of its 32k context: cap answers that set no limit.
DEMO_MAX_TOKENS = 512


def param_error(err: ParamError, prompt_param: str = "prompt", endpoint: str = "") -> APIError:
    """A refused parameter as a 400 naming it (the engine names the prompt "prompt"; chat requests
    call it "messages").

    A context overflow is told in the sentences of the API the client speaks, because client
    libraries recognise an overflow only by its text and only then take their fallbacks (trim the
    history, a bigger model): litellm looks for "This model's maximum context length is" or "prompt
    is too long"; LangChain for "prompt is too long" or "context_length_exceeded" in str(error),
    which the openai client makes of the message alone, so the OpenAI sentences end with the code.
    For a 64-token context:
      chat, with max_tokens: "This model's maximum context length is 64 tokens. However, you
        requested 108 tokens (8 in the messages, 100 in the completion). Please reduce the length
        of the messages or completion. (context_length_exceeded)";
      chat, without: "... However, your messages resulted in 70 tokens. Please reduce the length
        of the messages. (context_length_exceeded)";
      completions: "This model's maximum context length is 64 tokens, however you requested 86
        tokens (70 in your prompt; 16 for the completion). Please reduce your prompt; or
        completion length. (context_length_exceeded)";
      Anthropic (`endpoint` /v1/messages): "prompt is too long: 70 tokens > 64 maximum", or with
        a short prompt "input length and `max_tokens` exceed context limit: 8 + 100 > 64, decrease
        input length or `max_tokens` and try again".
    """
    param = prompt_param if err.param == "prompt" else err.param
    if not isinstance(err, ContextLengthError):
        return APIError(400, str(err), param=param, code="invalid_parameter")
    code = "context_length_exceeded"
    n, limit, asked = err.prompt_tokens, err.limit, err.completion_tokens
    head = f"This model's maximum context length is {limit} tokens"
    if endpoint == "/v1/messages" or endpoint.startswith("/v1/messages/"):
        message = (f"prompt is too long: {n} tokens > {limit} maximum" if asked is None or n >= limit else
                   f"input length and `max_tokens` exceed context limit: {n} + {asked} > {limit}, "
                   "decrease input length or `max_tokens` and try again")
    elif prompt_param == "prompt":  # OpenAI's (legacy) completions sentence, semicolons and all
        message = (f"{head}, however you requested {n + (asked or 0)} tokens ({n} in your prompt; "
                   f"{asked or 0} for the completion). Please reduce your prompt; or completion length. ({code})")
    elif asked is None:
        message = (f"{head}. However, your messages resulted in {n} tokens. Please reduce the length of the "
                   f"messages. ({code})")
    else:
        message = (f"{head}. However, you requested {n + asked} tokens ({n} in the messages, {asked} in the "
                   f"completion). Please reduce the length of the messages or completion. ({code})")
    return APIError(400, message, param=param, code=code)


def make_params(**fields) -> SamplingParams:
    """SamplingParams from a dialect's fields (400 naming the field on a bad value)."""
    try:
        return SamplingParams(**fields)
    except ParamError as err:
        raise param_error(err) from None


def resolve_max_tokens(serving: Serving, explicit: int | None, prompt_len: int) -> int | None:
    """An explicit limit is kept as is (the engine refuses it if it does not fit). Without one,
    the server's default cap applies (--default-max-tokens, DEMO_MAX_TOKENS for the demo),
    shortened to the room left in the context; no cap means up to the end of the context."""
    if explicit is not None:
        return explicit
    cap = serving.config.default_max_tokens
    if cap is None and serving.loaded is not None and serving.loaded.card.demo:
        cap = DEMO_MAX_TOKENS
    room = serving.engine.max_model_len - prompt_len if serving.engine else 0
    return min(cap, room) if cap is not None and room > 0 else None


def compile_grammar(serving: Serving, params: SamplingParams) -> None:
    """Compile the request's grammar before admission (400 if it cannot be), from the dialect's
    worker thread, so the engine finds it cached and no step waits on a compile."""
    if params.guided is not None:
        _, engine = serving.require_ready()
        compile_checked(engine.compile_grammar, params.guided)


def token_text(tokenizer: Tokenizer, i: int) -> str:
    """A token as the logprobs report it: its bytes as text (U+FFFD for a partial character)."""
    return tokenizer.token_bytes(i).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Usage:
    """The token counts of one request (several runs for a batch of prompts)."""

    prompt: int
    completion: int
    cached: int

    @classmethod
    def of(cls, runs: list[Run]) -> Usage:
        return cls(sum(len(run.prompt_ids) for run in runs), sum(run.completion_tokens for run in runs),
                   sum(run.cached_tokens for run in runs))


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
        """Validate against the engine (the server's one check) and take a queue slot, before
        any response byte is sent (raises APIError 400 or 429). The slot is given back by
        `release`, exactly once."""
        _, engine = self.serving.require_ready()
        try:
            engine.check(self.prompt_ids, self.params)
        except ParamError as err:
            raise param_error(err, self.prompt_param, self.endpoint) from None
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
            raise param_error(err, self.prompt_param, self.endpoint) from None
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


def admit_all(runs: list[Run]) -> None:
    """Admit every run or none."""
    try:
        for run in runs:
            run.admit()
    except BaseException:
        for run in runs:
            run.release()
        raise
