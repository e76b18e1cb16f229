"""OpenAI legacy completions (/v1/completions): a raw prompt (or a batch of them), no chat template.

Prompt scoring, as evaluation harnesses use it (lm-evaluation-harness's loglikelihood requests):
`echo: true` with `logprobs: k` returns the prompt's tokens and logprobs before the completion's
(engine prompt logprobs, see legacy_logprobs.py for the object); `max_tokens: 0` with echo scores
the prompt without generating (finish_reason "length", no completion token). Without echo,
max_tokens 0 is a 400, as vLLM answers it ("max_tokens must be at least 1, got 0").
"""

from __future__ import annotations

import asyncio
import dataclasses
from contextlib import aclosing
from typing import AsyncIterator

from ...engine.params import ParamError, SamplingParams
from ..errors import bad_request
from ..generation import Run, compile_grammar, param_error, resolve_max_tokens
from ..guided import request_constraint
from ..protocol import CompletionRequest
from .base import Job
from .legacy_logprobs import LegacyLogprobs
from .openai_common import OpenAIDialect, sampling_params

MAX_PROMPTS = 32


class OpenAICompletions(OpenAIDialect):
    id_prefix = "cmpl-"
    object = "text_completion"
    chunk_object = "text_completion"

    def prompts(self, body: CompletionRequest) -> list[list[int]]:
        """Every prompt of the request as token ids (a batch of texts or of id lists)."""
        tokenizer = self.serving.loaded.tokenizer
        p = body.prompt
        if isinstance(p, str):
            batch: list = [p]
        elif p and all(isinstance(x, int) for x in p):
            batch = [p]
        else:
            batch = list(p)
        if not batch:
            raise bad_request("prompt is empty", param="prompt")
        if len(batch) > MAX_PROMPTS:
            raise bad_request(f"at most {MAX_PROMPTS} prompts per request, got {len(batch)}", param="prompt")
        return [tokenizer.encode(x, bos=True) if isinstance(x, str) else list(x) for x in batch]

    def prepare(self, body: CompletionRequest, endpoint: str, key_name: str | None) -> Job:
        self.serving.check_model(body.model)
        if body.suffix:
            raise bad_request("suffix is not supported", param="suffix", code="unsupported_parameter")
        if body.best_of is not None and body.best_of != body.n:
            raise bad_request("best_of must equal n (no server-side ranking)", param="best_of",
                              code="unsupported_parameter")
        if body.max_tokens == 0 and not body.echo:
            raise bad_request("max_tokens must be at least 1, got 0 (max_tokens 0 scores the prompt, "
                              "with echo: true)", param="max_tokens", code="invalid_parameter")
        guided = request_constraint(body)
        runs = []
        for ids in self.prompts(body):
            params = sampling_params(body, max_tokens=None, logprobs=body.logprobs is not None,
                                     top_logprobs=body.logprobs or 0, continues_prompt=True, guided=guided)
            params = self._scoring(params, body, resolve_max_tokens(self.serving, body.max_tokens, len(ids)))
            runs.append(Run(self.serving, endpoint, body.model, key_name, body.user, ids, params))
        compile_grammar(self.serving, runs[0].params)
        return Job(body, runs)

    @staticmethod
    def _scoring(params: SamplingParams, body: CompletionRequest, max_tokens: int | None) -> SamplingParams:
        """The answer's length, and prompt logprobs for an echo with logprobs. An echo-only
        answer (max_tokens 0) is a scoring run for the engine even without logprobs: it reads
        the prompt and generates nothing."""
        prompt_logprobs = None
        if body.echo and body.logprobs is not None:
            prompt_logprobs = body.logprobs
        elif body.echo and max_tokens == 0:
            prompt_logprobs = 0
        try:
            return dataclasses.replace(params, max_tokens=max_tokens, prompt_logprobs=prompt_logprobs)
        except ParamError as err:
            raise param_error(err) from None

    def _new_logprobs(self, run: Run, echo: bool, prompt_logprobs) -> LegacyLogprobs:
        """A choice's logprobs, the echoed prompt's entries first."""
        lp = LegacyLogprobs(self.serving.loaded.tokenizer)
        if echo and prompt_logprobs is not None:
            lp.add_prompt(run.prompt_ids, prompt_logprobs)
        elif echo:
            lp.offset = len(self._echo(run))
        return lp

    async def _collect(self, run: Run, index_base: int, echo: bool, results: dict) -> None:
        texts: dict[int, list[str]] = {}
        lps: dict[int, list] = {}
        prompt_logprobs = None
        async with aclosing(run.outputs()) as outputs:
            async for out in outputs:
                if out.prompt_logprobs is not None:
                    prompt_logprobs = out.prompt_logprobs
                for d in out.deltas:
                    texts.setdefault(d.index, []).append(d.text)
                    lps.setdefault(d.index, []).extend(d.logprobs)
        prefix = self._echo(run) if echo else ""
        for i in range(run.params.n):
            choice = {"index": index_base + i, "text": prefix + "".join(texts.get(i, [])), "logprobs": None,
                      "finish_reason": run.finish_reasons.get(i)}
            if run.params.logprobs:
                lp = self._new_logprobs(run, echo, prompt_logprobs)
                lp.add_completion(lps.get(i, []))
                choice["logprobs"] = lp.take()
            results[index_base + i] = choice

    def _echo(self, run: Run) -> str:
        return self.serving.loaded.tokenizer.decode(run.prompt_ids)

    async def choices(self, job: Job) -> list[dict]:
        body, results = job.body, {}  # choice index -> choice
        await asyncio.gather(*(self._collect(run, k * body.n, body.echo, results) for k, run in enumerate(job.runs)))
        return [results[i] for i in sorted(results)]

    async def chunk_choices(self, job: Job) -> AsyncIterator[dict]:
        body, runs = job.body, job.runs
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(k: int, run: Run) -> None:
            """Run k's choices as chunks: with echo, the prompt first (with its logprobs, which
            come with the engine's first output), then the completion's deltas."""
            n = run.params.n
            logprobs: dict[int, LegacyLogprobs] = {}  # by the run's sample index

            async def echo_chunks(prompt_logprobs) -> None:
                for i in range(n):
                    logprobs[i] = self._new_logprobs(run, body.echo, prompt_logprobs)
                    if body.echo:
                        choice = {"index": k * n + i, "text": self._echo(run), "logprobs": None, "finish_reason": None}
                        if run.params.logprobs:
                            choice["logprobs"] = logprobs[i].take()
                        await queue.put(choice)

            try:
                scored = body.echo and run.params.prompt_logprobs is not None and run.params.logprobs
                if not scored:
                    await echo_chunks(None)
                async with aclosing(run.outputs()) as outputs:
                    async for out in outputs:
                        if scored and out.prompt_logprobs is not None:
                            await echo_chunks(out.prompt_logprobs)
                        for d in out.deltas:
                            choice = {"index": k * n + d.index, "text": d.text, "logprobs": None,
                                      "finish_reason": d.finish_reason}
                            if d.logprobs and run.params.logprobs:
                                lp = logprobs.setdefault(d.index, self._new_logprobs(run, False, None))
                                lp.add_completion(d.logprobs)
                                choice["logprobs"] = lp.take()
                            await queue.put(choice)
            except BaseException as err:
                await queue.put(err)
                raise
            finally:
                await queue.put(None)

        tasks = [asyncio.ensure_future(pump(k, run)) for k, run in enumerate(runs)]
        try:
            done = 0
            while done < len(tasks):
                item = await queue.get()
                if item is None:
                    done += 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
