"""Chat completions: request -> prompt ids + SamplingParams; engine outputs -> body or SSE chunks."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from typing import AsyncIterator

from fastapi import Request

from ..engine.params import ParamError, SamplingParams
from ..tokenizer import ChatTemplateError, Tokenizer
from .errors import APIError, bad_request
from .generation import Run, RunsResponse, admit_all, complete_unless_disconnected, param_error
from .guided import compile_checked, request_constraint
from .protocol import ChatCompletionRequest
from .state import Serving
from .tools import ChoiceOutput, ToolPlan, map_call_ids, plan_tools

# Line breaks to many clients (str.splitlines, httpx's iter_lines) though not to SSE: escaped, so
# that no client sees an event cut in two. JSON strings may spell any character as \uXXXX.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def sse(payload: dict | str) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False).translate(_LINE_BREAKS)
    return f"data: {text}\n\n"


def stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    return {int(k): v for k, v in (bias or {}).items()}


def sampling_params(body, *, max_tokens: int | None, logprobs: bool, top_logprobs: int,
                    continues_prompt: bool = False, guided=None, banned: list[int] | None = None) -> SamplingParams:
    """The fields chat and completions share, as engine SamplingParams (400 on a bad value)."""
    try:
        return SamplingParams(
            n=body.n, temperature=body.temperature, top_p=body.top_p, top_k=body.top_k, min_p=body.min_p,
            presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
            repetition_penalty=body.repetition_penalty, logit_bias=logit_bias(body.logit_bias), seed=body.seed,
            stop=stop_list(body.stop), stop_token_ids=list(body.stop_token_ids or []), max_tokens=max_tokens,
            min_tokens=body.min_tokens, ignore_eos=body.ignore_eos, logprobs=logprobs, top_logprobs=top_logprobs,
            output_continues_prompt=continues_prompt, guided=guided, banned_token_ids=list(banned or []))
    except ParamError as err:
        raise param_error(err) from None


# The demo writes random text until the end of its 32k context: cap answers that set no limit.
DEMO_MAX_TOKENS = 512


def resolve_max_tokens(serving: Serving, explicit: int | None, prompt_len: int) -> int | None:
    """An explicit limit is kept as is (the engine refuses it if it does not fit). Without one,
    the server's default cap applies (--default-max-tokens, DEMO_MAX_TOKENS for the demo),
    shortened to the room left in the context; no cap means up to the end of the context."""
    if explicit is not None:
        return explicit
    cap = serving.config.default_max_tokens
    if cap is None and serving.loaded is not None and serving.loaded.card.demo:
        cap = DEMO_MAX_TOKENS
    room = serving.engine.engine.max_model_len - prompt_len if serving.engine else 0
    return min(cap, room) if cap is not None and room > 0 else None


def compile_grammar(serving: Serving, params: SamplingParams) -> None:
    """Compile the request's grammar before admission (400 if it cannot be), from `prepare`'s
    worker thread, so the engine finds it cached and no step waits on a compile."""
    if params.guided is not None:
        _, engine = serving.require_ready()
        compile_checked(engine.engine.grammars, params.guided)


def token_text(tokenizer: Tokenizer, i: int) -> str:
    """A token as the logprobs report it: its bytes as text (U+FFFD for a partial character)."""
    return tokenizer.token_bytes(i).decode("utf-8", errors="replace")


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


def usage(*runs: Run) -> dict:
    """The usage object of one request (several runs for a batch of prompts)."""
    prompt = sum(len(run.prompt_ids) for run in runs)
    completion = sum(run.completion_tokens for run in runs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(run.cached_tokens for run in runs)}}


class ChatService:
    def __init__(self, serving: Serving) -> None:
        self.serving = serving

    def prepare(self, body: ChatCompletionRequest, endpoint: str, key_name: str | None) -> tuple[Run, ToolPlan]:
        loaded = self.serving.check_model(body.model)
        if body.top_logprobs and not body.logprobs:
            raise bad_request("top_logprobs requires logprobs to be true", param="top_logprobs")
        plan = plan_tools(body, loaded.tokenizer)
        guided = request_constraint(body)
        if guided is not None and plan.guided is not None:
            raise bad_request(f"{guided.field} cannot be combined with tool calls; "
                              "set tool_choice to \"none\" or drop the constraint",
                              param=guided.field, code="unsupported_parameter")
        messages = map_call_ids([m.model_dump(exclude_none=True) for m in body.messages])
        try:
            prompt_ids = loaded.tokenizer.encode_chat(messages, plan.tools)
        except ChatTemplateError as err:
            raise bad_request(str(err), param="messages", code="invalid_messages") from None
        explicit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        max_tokens = resolve_max_tokens(self.serving, explicit, len(prompt_ids))
        params = sampling_params(body, max_tokens=max_tokens, logprobs=body.logprobs,
                                 top_logprobs=body.top_logprobs or 0, guided=guided or plan.guided,
                                 banned=plan.banned)
        compile_grammar(self.serving, params)
        run = Run(self.serving, endpoint, body.model, key_name, body.user, prompt_ids, params,
                  request_json=body.model_dump_json(include={"messages", "tools"}), prompt_param="messages")
        return run, plan

    async def respond(self, body: ChatCompletionRequest, request: Request, key_name: str | None):
        # Off the event loop: the chat template over a long conversation (and compiling a
        # grammar) takes a while, and the loop serves every other client meanwhile.
        run, plan = await asyncio.to_thread(self.prepare, body, request.url.path, key_name)
        admit_all([run])
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return RunsResponse(self.stream(run, plan, include_usage), [run])
        return await complete_unless_disconnected(request, self.complete(run, plan), [run])

    def _outputs(self, run: Run, plan: ToolPlan) -> list[ChoiceOutput]:
        return [ChoiceOutput(self.serving.loaded.tokenizer, plan) for _ in range(run.params.n)]

    async def complete(self, run: Run, plan: ToolPlan) -> dict:
        tokenizer = self.serving.loaded.tokenizer
        n = run.params.n
        texts: list[list[str]] = [[] for _ in range(n)]
        logprobs: list[list[dict]] = [[] for _ in range(n)]
        outputs_of = self._outputs(run, plan)
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
            message: dict = {"role": "assistant", "content": "".join(texts[i])}
            if calls[i]:
                message["tool_calls"] = calls[i]
                message["content"] = message["content"] or None
            choices.append({"index": i, "message": message,
                            "logprobs": {"content": logprobs[i]} if run.params.logprobs else None,
                            "finish_reason": run.finish_reasons.get(i)})
        return {"id": f"chatcmpl-{run.id}", "object": "chat.completion", "created": run.created,
                "model": run.model, "choices": choices, "usage": usage(run),
                "system_fingerprint": self.serving.fingerprint}

    async def stream(self, run: Run, plan: ToolPlan, include_usage: bool) -> AsyncIterator[str]:
        tokenizer = self.serving.loaded.tokenizer
        base = {"id": f"chatcmpl-{run.id}", "object": "chat.completion.chunk", "created": run.created,
                "model": run.model, "system_fingerprint": self.serving.fingerprint}
        if include_usage:
            base["usage"] = None

        def chunk(index: int, delta: dict, finish: str | None = None, logprobs=None) -> str:
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        outputs_of = self._outputs(run, plan)
        try:
            for i in range(run.params.n):
                yield chunk(i, {"role": "assistant", "content": ""})
            async with aclosing(run.outputs()) as outputs:
                async for out in outputs:
                    for d in out.deltas:
                        choice = outputs_of[d.index]
                        text = choice.feed(d.text, d.token_ids)
                        if text or d.logprobs:
                            lp = {"content": logprob_entries(tokenizer, d.logprobs)} if run.params.logprobs else None
                            yield chunk(d.index, {"content": text}, logprobs=lp)
                        for call_delta in choice.call_deltas():
                            yield chunk(d.index, {"tool_calls": [call_delta]})
                        if d.finish_reason:
                            tail, calls = choice.finish()
                            if tail:
                                yield chunk(d.index, {"content": tail})
                            for call_delta in choice.closing_deltas(calls or []):
                                yield chunk(d.index, {"tool_calls": [call_delta]})
                            if calls:
                                run.finish_reasons[d.index] = "tool_calls"
                            yield chunk(d.index, {}, "tool_calls" if calls else d.finish_reason)
            if include_usage:
                yield sse({**base, "choices": [], "usage": usage(run)})
        except APIError as err:
            yield sse(err.openai_body())
        except Exception as err:  # a failure mid-stream ends the stream with an error event
            yield sse(APIError(500, f"generation failed: {err}", code="internal_error").openai_body())
        yield sse("[DONE]")
