"""Ollama's /api/generate: one prompt, through the model's chat template (the chat path, as a
conversation of `system` and `prompt`), or as it is (`raw`, or rendered by the request's own
`template`: the completions path, no chat template). The final object carries `context`, the
token ids of the prompt and the answer; a request's `context` is put before its prompt, so a
conversation continues where the last answer ended.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator

from ..errors import bad_request
from ..protocol import CompletionRequest
from ..protocol_ollama import GenerateRequest
from ..tools import ChoiceOutput, ToolPlan
from .base import Dialect, Job, json_line, translated
from .ollama import (
    NDJSON,
    created_at,
    error_line,
    final_fields,
    load_answer,
    refuse_unreadable,
    response_format,
    sampling_fields,
    served_id,
    stop_list,
    with_limits,
)
from .ollama_template import TemplateError, render
from .openai_chat import ChatJob, OpenAIChat, translated_chat
from .openai_completions import OpenAICompletions
from .pieces import Text, choice_pieces


@dataclass
class OllamaGenerateJob(Job):
    plan: ToolPlan = field(default_factory=ToolPlan)  # the chat path's (no tools), or none for raw prompts
    with_context: bool = True  # Ollama answers a raw prompt without `context`
    started: float = field(default_factory=time.time)


class OllamaGenerate(Dialect):
    media_type = NDJSON

    def loading(self, body: GenerateRequest) -> dict | None:
        """Ollama's answer to an empty prompt (it loads the model), else None."""
        served_id(self.serving, body.model)
        return None if body.prompt else load_answer(body.model, "response", "")

    def prepare(self, body: GenerateRequest, endpoint: str, key_name: str | None) -> OllamaGenerateJob:
        started = time.time()
        model = served_id(self.serving, body.model)
        refuse_unreadable(body.think, body.images, "images")
        if body.suffix:
            raise bad_request("suffix is not supported: this model does not fill in the middle", param="suffix",
                              code="unsupported_parameter")
        fields = {"model": model, **sampling_fields(body.options)}
        fmt = response_format(body.format)
        if fmt is not None:
            fields["response_format"] = fmt
        make = self._as_is if body.raw or body.template else self._templated
        job = with_limits(lambda: make(body, fields, endpoint, key_name), self.serving, body.options)
        plan = job.plan if isinstance(job, ChatJob) else ToolPlan()
        return OllamaGenerateJob(body, job.runs, plan, not body.raw, started)

    def _templated(self, body: GenerateRequest, fields: dict, endpoint: str, key_name: str | None) -> ChatJob:
        """The chat template over `system` and `prompt`, after the context if one is given."""
        messages = ([{"role": "system", "content": body.system}] if body.system else []) + \
            [{"role": "user", "content": body.prompt or ""}]
        chat = translated_chat({**fields, "messages": messages})
        chat.stop = stop_list(body.options)
        job = OpenAIChat(self.serving).prepare(chat, endpoint, key_name)
        if body.context:
            tokenizer = self.serving.loaded.tokenizer
            run = job.runs[0]
            turn = run.prompt_ids
            if tokenizer.bos_id is not None and turn[:1] == [tokenizer.bos_id]:
                turn = turn[1:]
            # The last answer's turn ends as the template ends one (its end token), if it was cut.
            close = [] if body.context[-1] in tokenizer.stop_ids else [tokenizer.eos_id]
            run.prompt_ids = list(body.context) + close + turn
        return job

    def _as_is(self, body: GenerateRequest, fields: dict, endpoint: str, key_name: str | None) -> Job:
        """The prompt (raw, or rendered by the request's template) as text, after the context."""
        text = body.prompt or ""
        if not body.raw:
            try:
                text = render(body.template, system=body.system or "", prompt=text)
            except TemplateError as err:
                raise bad_request(str(err), param="template", code="unsupported_parameter") from None
        tokenizer = self.serving.loaded.tokenizer
        ids = list(body.context) + tokenizer.encode(text, bos=False) if body.context else tokenizer.encode(text)
        request = translated(CompletionRequest, {**fields, "prompt": ids, "max_tokens": None})
        request.stop = stop_list(body.options)
        return OpenAICompletions(self.serving).prepare(request, endpoint, key_name)

    def _head(self, job: OllamaGenerateJob) -> dict:
        return {"model": job.body.model, "created_at": created_at()}

    def _final(self, job: OllamaGenerateJob, choice: ChoiceOutput) -> dict:
        final = final_fields(job, job.started)
        if job.with_context:
            final["context"] = job.runs[0].prompt_ids + choice.ids
        return final

    async def complete(self, job: OllamaGenerateJob) -> dict:
        choice = ChoiceOutput(self.serving.loaded.tokenizer, job.plan)
        texts = []
        async with aclosing(choice_pieces(job.runs[0], choice)) as batches:
            async for batch in batches:
                texts += [p.text for p in batch if isinstance(p, Text)]
        return {**self._head(job), "response": "".join(texts), **self._final(job, choice)}

    def stream(self, job: OllamaGenerateJob) -> AsyncIterator[str]:
        return self._lines(job)

    async def _lines(self, job: OllamaGenerateJob) -> AsyncIterator[str]:
        choice = ChoiceOutput(self.serving.loaded.tokenizer, job.plan)
        try:
            async with aclosing(choice_pieces(job.runs[0], choice)) as batches:
                async for batch in batches:
                    for piece in batch:
                        if isinstance(piece, Text) and piece.text:
                            yield json_line({**self._head(job), "response": piece.text, "done": False})
            yield json_line({**self._head(job), "response": "", **self._final(job, choice)})
        except Exception as err:  # a failure mid-stream ends the stream with an error line
            yield json_line(error_line(err))
