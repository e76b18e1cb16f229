"""OpenAI legacy completions (/v1/completions): a raw prompt (or a batch of them), no chat template."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import AsyncIterator

from ..errors import bad_request
from ..generation import Run, compile_grammar, resolve_max_tokens, token_text
from ..guided import request_constraint
from ..protocol import CompletionRequest
from .base import Job
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
        guided = request_constraint(body)
        runs = []
        for ids in self.prompts(body):
            params = sampling_params(body, max_tokens=resolve_max_tokens(self.serving, body.max_tokens, len(ids)),
                                     logprobs=body.logprobs is not None, top_logprobs=body.logprobs or 0,
                                     continues_prompt=True, guided=guided)
            runs.append(Run(self.serving, endpoint, body.model, key_name, body.user, ids, params))
        compile_grammar(self.serving, runs[0].params)
        return Job(body, runs)

    def _logprobs(self, deltas_logprobs, offset: int) -> dict:
        tok = self.serving.loaded.tokenizer
        tokens, values, tops, offsets = [], [], [], []
        for lp in deltas_logprobs:
            text = token_text(tok, lp.token_id)
            tokens.append(text)
            values.append(lp.logprob)
            tops.append({token_text(tok, t): v for t, v in lp.top} or None)
            offsets.append(offset)
            offset += len(text)
        return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}

    async def _collect(self, run: Run, index_base: int, echo: str, results: dict) -> None:
        texts: dict[int, list[str]] = {}
        lps: dict[int, list] = {}
        async with aclosing(run.outputs()) as outputs:
            async for out in outputs:
                for d in out.deltas:
                    texts.setdefault(d.index, []).append(d.text)
                    lps.setdefault(d.index, []).extend(d.logprobs)
        for i in range(run.params.n):
            choice = {"index": index_base + i, "text": echo + "".join(texts.get(i, [])), "logprobs": None,
                      "finish_reason": run.finish_reasons.get(i)}
            if run.params.logprobs:
                choice["logprobs"] = self._logprobs(lps.get(i, []), len(echo))
            results[index_base + i] = choice

    def _echo(self, body: CompletionRequest, run: Run) -> str:
        return self.serving.loaded.tokenizer.decode(run.prompt_ids) if body.echo else ""

    async def choices(self, job: Job) -> list[dict]:
        body, results = job.body, {}  # choice index -> choice
        await asyncio.gather(*(self._collect(run, k * body.n, self._echo(body, run), results)
                               for k, run in enumerate(job.runs)))
        return [results[i] for i in sorted(results)]

    async def chunk_choices(self, job: Job) -> AsyncIterator[dict]:
        body, runs = job.body, job.runs
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(k: int, run: Run) -> None:
            try:
                echo = self._echo(body, run)
                if echo:
                    for i in range(run.params.n):
                        await queue.put((k * body.n + i, echo, None, []))
                async with aclosing(run.outputs()) as outputs:
                    async for out in outputs:
                        for d in out.deltas:
                            await queue.put((k * body.n + d.index, d.text, d.finish_reason, d.logprobs))
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
                index, text, finish, lps = item
                choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
                if lps and body.logprobs is not None:
                    choice["logprobs"] = self._logprobs(lps, 0)
                yield choice
        finally:
            for task in tasks:
                task.cancel()
