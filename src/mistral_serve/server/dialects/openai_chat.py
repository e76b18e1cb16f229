"""OpenAI chat completions (also the hub's): messages -> prompt ids + SamplingParams; engine
outputs -> a chat.completion or its chunks, with tool calls split out of the text."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator

from ...tokenizer import ChatTemplateError, Tokenizer
from ..errors import bad_request
from ..generation import Run, compile_grammar, resolve_max_tokens, token_text
from ..guided import request_constraint
from ..protocol import ChatCompletionRequest
from ..tools import ChoiceOutput, ToolPlan, map_call_ids, plan_tools
from .base import Job, translated
from .conversation_shapes import PromptEnding, prompt_ending
from .openai_common import OpenAIDialect, sampling_params


def logprob_entries(tokenizer: Tokenizer, logprobs) -> list[dict]:
    def token(i: int) -> tuple[str, list[int]]:
        return token_text(tokenizer, i), list(tokenizer.token_bytes(i))

    entries = []
    for lp in logprobs:
        text, raw = token(lp.token_id)
        top = []
        for tid, value in lp.top:
            t, b = token(tid)
            top.append({"token": t, "logprob": value, "bytes": b})
        entries.append({"token": text, "logprob": lp.logprob, "bytes": raw, "top_logprobs": top})
    return entries


def _chunk_choice(index: int, delta: dict, finish: str | None = None, logprobs=None) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def translated_chat(fields: dict) -> ChatCompletionRequest:
    """The chat request another dialect's body translates into (its `fields`)."""
    return translated(ChatCompletionRequest, fields)


@dataclass
class ChatJob(Job):
    plan: ToolPlan
    # Keyword-only, so that the jobs of other dialects built on this one keep their positional
    # fields. The text each answer's content starts with (a Mistral-style prefix).
    echo: str = field(default="", kw_only=True)


class OpenAIChat(OpenAIDialect):
    id_prefix = "chatcmpl-"
    object = "chat.completion"
    chunk_object = "chat.completion.chunk"

    def encode(self, body: ChatCompletionRequest) -> tuple[ToolPlan, list[int]]:
        """The request's tool plan and prompt ids (404 for another model, 400 for bad tools or
        messages); also what other dialects translated into a chat request count tokens with."""
        plan, prompt_ids, _ = self._encode(body)
        return plan, prompt_ids

    def _encode(self, body: ChatCompletionRequest) -> tuple[ToolPlan, list[int], PromptEnding]:
        loaded = self.serving.check_model(body.model)
        ending = prompt_ending(body)
        plan = plan_tools(body, loaded.tokenizer)
        messages = map_call_ids([m.model_dump(exclude_none=True) for m in body.messages])
        try:
            prompt_ids = loaded.tokenizer.encode_chat(messages, plan.tools, continue_final=ending.continue_final,
                                                      add_generation_prompt=ending.add_generation_prompt)
        except ChatTemplateError as err:
            raise bad_request(str(err), param="messages", code="invalid_messages") from None
        return plan, prompt_ids, ending

    def prepare(self, body: ChatCompletionRequest, endpoint: str, key_name: str | None) -> ChatJob:
        if body.top_logprobs and not body.logprobs:
            raise bad_request("top_logprobs requires logprobs to be true", param="top_logprobs")
        plan, prompt_ids, ending = self._encode(body)
        guided = request_constraint(body)
        if guided is not None and plan.guided is not None:
            raise bad_request(f"{guided.field} cannot be combined with tool calls; "
                              "set tool_choice to \"none\" or drop the constraint",
                              param=guided.field, code="unsupported_parameter")
        explicit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        max_tokens = resolve_max_tokens(self.serving, explicit, len(prompt_ids))
        # A continued message: the answer's text is decoded as the rest of the prompt's (" Paris"
        # after "The capital is", not "Paris").
        params = sampling_params(body, max_tokens=max_tokens, logprobs=body.logprobs,
                                 top_logprobs=body.top_logprobs or 0, continues_prompt=ending.continue_final,
                                 guided=guided or plan.guided, banned=plan.banned)
        compile_grammar(self.serving, params)
        run = Run(self.serving, endpoint, body.model, key_name, body.user, prompt_ids, params,
                  request_json=body.model_dump_json(include={"messages", "tools"}), prompt_param="messages")
        return ChatJob(body, [run], plan, echo=ending.echo)

    def _outputs(self, job: ChatJob) -> list[ChoiceOutput]:
        return [ChoiceOutput(self.serving.loaded.tokenizer, job.plan) for _ in range(job.runs[0].params.n)]

    async def choices(self, job: ChatJob) -> list[dict]:
        tokenizer = self.serving.loaded.tokenizer
        run = job.runs[0]
        n = run.params.n
        texts: list[list[str]] = [[] for _ in range(n)]
        logprobs: list[list[dict]] = [[] for _ in range(n)]
        outputs_of = self._outputs(job)
        calls: list[list[dict] | None] = [None] * n
        async with aclosing(run.outputs()) as outputs:
            async for out in outputs:
                for d in out.deltas:
                    texts[d.index].append(outputs_of[d.index].feed(d.text, d.token_ids))
                    if run.params.logprobs:
                        logprobs[d.index] += logprob_entries(tokenizer, d.logprobs)
                    if d.finish_reason:
                        tail, calls[d.index] = outputs_of[d.index].finish()
                        texts[d.index].append(tail)
                        if calls[d.index]:
                            run.finish_reasons[d.index] = "tool_calls"  # before the run's record is written
        choices = []
        for i in range(n):
            message: dict = {"role": "assistant", "content": job.echo + "".join(texts[i])}
            if calls[i]:
                message["tool_calls"] = calls[i]
                message["content"] = message["content"] or None
            choices.append({"index": i, "message": message,
                            "logprobs": {"content": logprobs[i]} if run.params.logprobs else None,
                            "finish_reason": run.finish_reasons.get(i)})
        return choices

    async def chunk_choices(self, job: ChatJob) -> AsyncIterator[dict]:
        tokenizer = self.serving.loaded.tokenizer
        run = job.runs[0]
        outputs_of = self._outputs(job)
        for i in range(run.params.n):
            yield _chunk_choice(i, {"role": "assistant", "content": job.echo})
        async with aclosing(run.outputs()) as outputs:
            async for out in outputs:
                for d in out.deltas:
                    choice = outputs_of[d.index]
                    text = choice.feed(d.text, d.token_ids)
                    if text or d.logprobs:
                        lp = {"content": logprob_entries(tokenizer, d.logprobs)} if run.params.logprobs else None
                        yield _chunk_choice(d.index, {"content": text}, logprobs=lp)
                    for call_delta in choice.call_deltas():
                        yield _chunk_choice(d.index, {"tool_calls": [call_delta]})
                    if d.finish_reason:
                        tail, calls = choice.finish()
                        if tail:
                            yield _chunk_choice(d.index, {"content": tail})
                        for call_delta in choice.closing_deltas(calls or []):
                            yield _chunk_choice(d.index, {"tool_calls": [call_delta]})
                        if calls:
                            run.finish_reasons[d.index] = "tool_calls"
                        yield _chunk_choice(d.index, {}, "tool_calls" if calls else d.finish_reason)
