"""What OpenAI's chat and completions dialects share: the sampling fields of a body, the usage
object, the response envelope and the event stream (chunks, the error event, `[DONE]`)."""

from __future__ import annotations

from contextlib import aclosing
from typing import AsyncIterator

from ...engine.params import GuidedDecoding, SamplingParams
from ..errors import APIError
from ..generation import Run, Usage, make_params
from .base import Dialect, Job, sse


def stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    return {int(k): v for k, v in (bias or {}).items()}


def sampling_params(body, *, max_tokens: int | None, logprobs: bool, top_logprobs: int,
                    continues_prompt: bool = False, guided: GuidedDecoding | None = None,
                    banned: list[int] | None = None) -> SamplingParams:
    """The fields chat and completions share, as engine SamplingParams (400 on a bad value)."""
    return make_params(
        n=body.n, temperature=body.temperature, top_p=body.top_p, top_k=body.top_k, min_p=body.min_p,
        presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty, logit_bias=logit_bias(body.logit_bias), seed=body.seed,
        stop=stop_list(body.stop), stop_token_ids=list(body.stop_token_ids or []), max_tokens=max_tokens,
        min_tokens=body.min_tokens, ignore_eos=body.ignore_eos, logprobs=logprobs, top_logprobs=top_logprobs,
        output_continues_prompt=continues_prompt, guided=guided, banned_token_ids=list(banned or []))


def usage(runs: list[Run]) -> dict:
    """The usage object of one request (several runs for a batch of prompts)."""
    u = Usage.of(runs)
    return {"prompt_tokens": u.prompt, "completion_tokens": u.completion, "total_tokens": u.prompt + u.completion,
            "prompt_tokens_details": {"cached_tokens": u.cached}}


def error_event(err: Exception) -> str:
    """A failure mid-stream, as the event that ends the stream (the status line has gone out)."""
    if not isinstance(err, APIError):
        err = APIError(500, f"generation failed: {err}", code="internal_error")
    return sse(err.openai_body())


class OpenAIDialect(Dialect):
    """An OpenAI endpoint: its answer is an envelope around choices; its stream, chunks of one
    choice each, then the usage chunk if asked for, then `[DONE]`."""

    id_prefix = ""  # "chatcmpl-", "cmpl-"
    object = ""  # of the whole answer
    chunk_object = ""  # of a streamed chunk

    async def choices(self, job: Job) -> list[dict]:
        """The whole answer's choices, once every run has finished."""
        raise NotImplementedError

    def chunk_choices(self, job: Job) -> AsyncIterator[dict]:
        """The streamed choices, one per chunk, as the runs produce them."""
        raise NotImplementedError

    def _envelope(self, job: Job, obj: str) -> dict:
        first = job.runs[0]
        return {"id": f"{self.id_prefix}{first.id}", "object": obj, "created": first.created, "model": job.body.model}

    async def complete(self, job: Job) -> dict:
        choices = await self.choices(job)
        return {**self._envelope(job, self.object), "choices": choices, "usage": usage(job.runs),
                "system_fingerprint": self.serving.fingerprint}

    def stream(self, job: Job) -> AsyncIterator[str]:
        options = job.body.stream_options
        include_usage = bool(options and options.include_usage)
        base = {**self._envelope(job, self.chunk_object), "system_fingerprint": self.serving.fingerprint}
        if include_usage:
            base["usage"] = None
        return self._events(job, base, include_usage)

    async def _events(self, job: Job, base: dict, include_usage: bool) -> AsyncIterator[str]:
        try:
            # aclosing: a client that leaves closes the choices at once (their runs abort).
            async with aclosing(self.chunk_choices(job)) as choices:
                async for choice in choices:
                    yield sse({**base, "choices": [choice]})
            if include_usage:
                yield sse({**base, "choices": [], "usage": usage(job.runs)})
        except Exception as err:  # a failure mid-stream ends the stream with an error event
            yield error_event(err)
        yield sse("[DONE]")
