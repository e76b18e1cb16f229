"""OpenAI's Responses API: the body (with the stored conversation of `previous_response_id`) is
translated into the chat request the OpenAI chat path takes, so prompts, sampling, tool plans and
grammars are that path's; the engine's pieces are rendered as a response object with output items,
or as its typed events. A response made with `store` (the default) is kept in the store, for
GET, input_items and the next turn.

Tool calls: function tools become chat tools, `function_call` items an assistant's `tool_calls`,
`function_call_output` items `tool` messages; calls in the output become `function_call` items with
call ids `call_` + the call's id, which map_call_ids pairs with their results when they come back.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from ..errors import APIError, bad_request
from ..generation import Run
from ..protocol import ChatCompletionRequest
from ..protocol_responses import (FormatJSONObject, FormatJSONSchema, FunctionCallItem, FunctionCallOutputItem,
                                  FunctionTool, MessageItem, OtherContent, OtherItem, RefusalContent,
                                  ResponsesRequest)
from ..store import StoredResponse
from ..tools import ChoiceOutput
from .base import Dialect, sse
from .openai_chat import ChatJob, OpenAIChat, logprob_entries, translated_chat
from .pieces import CallArguments, CallStart, Finished, Text, choice_pieces, collect

TEXT_ONLY = "this model reads text only: image, audio and file inputs are not supported"
LOGPROBS_INCLUDE = "message.output_text.logprobs"


def _hex() -> str:
    return uuid.uuid4().hex


def unsupported(message: str, param: str) -> APIError:
    return bad_request(message, param=param, code="unsupported_parameter")


def _text(content, where: str) -> str:
    """The text of a string or of a list of text parts (400 on an image, audio or file part)."""
    if isinstance(content, str):
        return content
    parts = []
    for j, part in enumerate(content):
        if isinstance(part, OtherContent):
            raise bad_request(f"{TEXT_ONLY} (content part type {part.type!r})", param=f"{where}.{j}")
        parts.append(part.refusal if isinstance(part, RefusalContent) else part.text)
    return "".join(parts)


def input_messages(body: ResponsesRequest) -> list[dict]:
    """The request's input as chat messages (function calls join the assistant message before)."""
    if isinstance(body.input, str):
        return [{"role": "user", "content": body.input}]
    out: list[dict] = []
    for i, item in enumerate(body.input):
        where = f"input.{i}"
        if isinstance(item, MessageItem):
            out.append({"role": item.role, "content": _text(item.content, f"{where}.content")})
        elif isinstance(item, FunctionCallItem):
            call = {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
            if out and out[-1]["role"] == "assistant":
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": _text(item.output, f"{where}.output")})
        elif isinstance(item, OtherItem):
            hint = ("; send the item itself, or continue with previous_response_id" if item.type == "item_reference"
                    else "")
            raise bad_request(f"input items of type {item.type!r} are not supported here{hint}", param=f"{where}.type")
    return out


def stored_input_items(body: ResponsesRequest) -> list[dict]:
    """The input items as GET .../input_items lists them: each with an id, message content as parts."""
    if isinstance(body.input, str):
        items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": body.input}]}]
    else:
        items = []
        for item in body.input:
            d = item.model_dump(exclude_none=True)
            if isinstance(item, MessageItem) and isinstance(item.content, str):
                kind = "output_text" if item.role == "assistant" else "input_text"
                d["content"] = [{"type": kind, "text": item.content}]
            items.append(d)
    prefix = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}
    return [{"id": d.pop("id", None) or prefix.get(d["type"], "item_") + _hex(), **d, "status": "completed"}
            for d in items]


def _refuse_unsupported(body: ResponsesRequest) -> None:
    for name in ("conversation", "prompt", "context_management"):
        if getattr(body, name) is not None:
            raise unsupported(f"{name} is not supported by this server; send the conversation as input "
                              "(or continue a stored response with previous_response_id)", name)
    if body.background:
        raise unsupported("background responses are not supported; stream the response instead", "background")
    if body.truncation == "auto":
        raise unsupported("truncation 'auto' is not supported: a conversation longer than the context is "
                          "refused (truncation 'disabled')", "truncation")
    if body.reasoning is not None and body.reasoning.effort not in (None, "none"):
        raise unsupported("reasoning is not supported: this model does not reason", "reasoning.effort")
    for i, tool in enumerate(body.tools or []):
        if not isinstance(tool, FunctionTool):
            raise unsupported(f"tools of type {tool.type!r} are not supported: only function tools", f"tools.{i}.type")


def chat_request(body: ResponsesRequest, history: list[dict]) -> ChatCompletionRequest:
    """The chat request the OpenAI chat path takes for this body, after the stored `history`."""
    _refuse_unsupported(body)
    system = [{"role": "system", "content": body.instructions}] if body.instructions else []
    fields: dict = {"model": body.model, "messages": system + history + input_messages(body),
                    "stream": bool(body.stream)}
    if body.tools:
        fields["tools"] = [{"type": "function", "function": t.model_dump(exclude_none=True, exclude={"type"})}
                           for t in body.tools]
    if body.tool_choice is not None:
        choice = body.tool_choice
        fields["tool_choice"] = choice if isinstance(choice, str) else {"type": "function",
                                                                        "function": {"name": choice.name}}
    fmt = body.text.format if body.text else None
    if isinstance(fmt, FormatJSONObject):
        fields["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, FormatJSONSchema):
        fields["response_format"] = {"type": "json_schema",
                                     "json_schema": fmt.model_dump(by_alias=True, exclude_none=True, exclude={"type"})}
    if body.top_logprobs is not None or LOGPROBS_INCLUDE in (body.include or []):
        fields.update(logprobs=True, top_logprobs=body.top_logprobs or 0)
    same = {"max_tokens": body.max_output_tokens, "user": body.user or body.safety_identifier,
            "parallel_tool_calls": body.parallel_tool_calls}
    for name in ("temperature", "top_p", "seed", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                 "frequency_penalty", "stop"):
        same[name] = getattr(body, name)
    fields.update({k: v for k, v in same.items() if v is not None})
    return translated_chat(fields)


@dataclass
class ResponsesJob(ChatJob):
    id: str = ""
    history: list[dict] = field(default_factory=list)  # the conversation before this turn
    turn: list[dict] = field(default_factory=list)  # this turn's input, as chat messages
    input_items: list[dict] = field(default_factory=list)
    key_name: str | None = None


class OpenAIResponses(Dialect):
    def __init__(self, serving) -> None:
        super().__init__(serving)
        self.chat = OpenAIChat(serving)

    # ---- stored responses --------------------------------------------------------------------------
    def stored(self, response_id: str, key_name: str | None, param: str | None = None) -> StoredResponse:
        found = self.serving.store.get_response(response_id, key_name)
        if found is None:
            what = "Previous response" if param == "previous_response_id" else "Response"
            raise APIError(404, f"{what} with id '{response_id}' not found.", param=param, code="response_not_found")
        return found

    def _history(self, body: ResponsesRequest, key_name: str | None) -> list[dict]:
        if body.previous_response_id is None:
            return []
        return self.stored(body.previous_response_id, key_name, "previous_response_id").history

    # ---- translation in ----------------------------------------------------------------------------
    def prepare(self, body: ResponsesRequest, endpoint: str, key_name: str | None) -> ResponsesJob:
        history = self._history(body, key_name)
        chat = chat_request(body, history)
        job = self.chat.prepare(chat, endpoint, key_name)
        turn = chat.model_dump(exclude_none=True)["messages"][len(history) + (1 if body.instructions else 0):]
        return ResponsesJob(body, job.runs, job.plan, id=f"resp_{job.runs[0].id}", history=history, turn=turn,
                            input_items=stored_input_items(body), key_name=key_name)

    def count_tokens(self, body: ResponsesRequest, key_name: str | None) -> dict:
        _, prompt_ids = self.chat.encode(chat_request(body, self._history(body, key_name)))
        return {"object": "response.input_tokens", "input_tokens": len(prompt_ids)}

    # ---- rendering out -----------------------------------------------------------------------------
    def response(self, job: ResponsesJob, status: str, output: list[dict], *, incomplete: dict | None = None,
                 error: dict | None = None) -> dict:
        body, run = job.body, job.runs[0]
        params = run.params
        fmt = body.text.format.model_dump(by_alias=True, exclude_none=True) if body.text and body.text.format \
            else {"type": "text"}
        choice = body.tool_choice
        done = status in ("completed", "incomplete", "failed")
        return {
            "id": job.id, "object": "response", "created_at": run.created, "status": status,
            "background": False, "completed_at": int(time.time()) if status == "completed" else None,
            "error": error, "incomplete_details": incomplete, "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens, "max_tool_calls": body.max_tool_calls, "model": body.model,
            "output": output, "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id, "prompt_cache_key": body.prompt_cache_key,
            "reasoning": {"effort": None, "summary": None}, "safety_identifier": body.safety_identifier,
            "service_tier": "default", "store": body.store is not False, "temperature": params.temperature,
            "text": {"format": fmt, "verbosity": "medium"},
            "tool_choice": choice.model_dump() if choice is not None and not isinstance(choice, str) else choice or "auto",
            "tools": [t.model_dump(exclude_none=True) for t in body.tools or []],
            "top_logprobs": body.top_logprobs or 0, "top_p": params.top_p, "truncation": "disabled",
            "usage": self.usage(run) if done else None, "user": body.user, "metadata": body.metadata or {},
        }

    @staticmethod
    def usage(run: Run) -> dict:
        return {"input_tokens": len(run.prompt_ids),
                "input_tokens_details": {"cached_tokens": run.cached_tokens, "cache_write_tokens": 0},
                "output_tokens": run.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": len(run.prompt_ids) + run.completion_tokens}

    def _logprobs(self, logprobs) -> list[dict]:
        return logprob_entries(self.serving.loaded.tokenizer, logprobs) if logprobs else []

    @staticmethod
    def _status(reason: str | None) -> tuple[str, dict | None]:
        if reason == "length":
            return "incomplete", {"reason": "max_output_tokens"}
        return "completed", None

    async def _keep(self, job: ResponsesJob, response: dict) -> None:
        """Store the finished response (store: true), with the conversation it ends."""
        if job.body.store is False:
            return
        reply: dict = {"role": "assistant", "content": ""}
        for item in response["output"]:
            if item["type"] == "message":
                reply["content"] += "".join(p["text"] for p in item["content"])
            elif item["type"] == "function_call":
                reply.setdefault("tool_calls", []).append({"id": item["call_id"], "type": "function", "function": {
                    "name": item["name"], "arguments": item["arguments"]}})
        now = time.time()
        days = self.serving.config.response_retention_days
        record = StoredResponse(job.id, job.key_name, now, now + days * 86400, response, job.input_items,
                                job.history + job.turn + [reply])
        await asyncio.shield(asyncio.to_thread(self.serving.store.put_response, record))

    async def complete(self, job: ResponsesJob) -> dict:
        answer = await collect(job.runs[0], ChoiceOutput(self.serving.loaded.tokenizer, job.plan))
        status, incomplete = self._status(answer.reason)
        output: list[dict] = []
        if answer.text or not answer.calls:
            output.append({"id": f"msg_{_hex()}", "type": "message", "status": status, "role": "assistant",
                           "content": [{"type": "output_text", "text": answer.text, "annotations": [],
                                        "logprobs": self._logprobs(answer.logprobs)}]})
        for call in answer.calls or []:
            output.append({"id": f"fc_{_hex()}", "type": "function_call", "status": "completed",
                           "call_id": f"call_{call['id']}", "name": call["function"]["name"],
                           "arguments": call["function"]["arguments"]})
        response = self.response(job, status, output, incomplete=incomplete)
        await self._keep(job, response)
        return response

    def stream(self, job: ResponsesJob) -> AsyncIterator[str]:
        return self._events(job)

    async def _events(self, job: ResponsesJob) -> AsyncIterator[str]:
        numbers = itertools.count()
        items: list[dict] = []  # the output items so far; the last may be open
        open_item: dict | None = None
        pending: list = []  # logprobs of tokens whose text has not come out yet

        def event(kind: str, **payload) -> str:
            return sse({"type": kind, "sequence_number": next(numbers), **payload}, event=kind)

        def added(item: dict) -> list[str]:
            nonlocal open_item
            open_item = item
            items.append(item)
            return [event("response.output_item.added", output_index=len(items) - 1, item=dict(item, content=[])
                          if item["type"] == "message" else dict(item))]

        def close(status: str = "completed") -> list[str]:
            nonlocal open_item
            item, open_item = open_item, None
            if item is None:
                return []
            where = {"item_id": item["id"], "output_index": len(items) - 1}
            item["status"] = status
            if item["type"] == "message":
                part = item["content"][0]
                return [event("response.output_text.done", **where, content_index=0, text=part["text"],
                              logprobs=part["logprobs"]),
                        event("response.content_part.done", **where, content_index=0, part=part),
                        event("response.output_item.done", output_index=where["output_index"], item=item)]
            return [event("response.function_call_arguments.done", **where, name=item["name"],
                          arguments=item["arguments"]),
                    event("response.output_item.done", output_index=where["output_index"], item=item)]

        def open_message() -> list[str]:
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events = close() + added({"id": f"msg_{_hex()}", "type": "message", "status": "in_progress",
                                      "role": "assistant", "content": [part]})
            return events + [event("response.content_part.added", item_id=open_item["id"],
                                   output_index=len(items) - 1, content_index=0, part=dict(part))]

        def text_events(piece: Text) -> list[str]:
            pending.extend(piece.logprobs)
            if not piece.text:
                return []
            events = open_message() if open_item is None or open_item["type"] != "message" else []
            part = open_item["content"][0]
            logprobs = self._logprobs(pending)
            pending.clear()
            part["text"] += piece.text
            part["logprobs"] += logprobs
            return events + [event("response.output_text.delta", item_id=open_item["id"], output_index=len(items) - 1,
                                   content_index=0, delta=piece.text, logprobs=logprobs)]

        def call_events(piece: CallStart | CallArguments) -> list[str]:
            if isinstance(piece, CallStart):
                return close() + added({"id": f"fc_{_hex()}", "type": "function_call", "status": "in_progress",
                                        "call_id": f"call_{piece.id}", "name": piece.name, "arguments": ""})
            open_item["arguments"] += piece.text
            return [event("response.function_call_arguments.delta", item_id=open_item["id"],
                          output_index=len(items) - 1, delta=piece.text)]

        start = self.response(job, "in_progress", [])
        yield event("response.created", response=start)
        yield event("response.in_progress", response=start)
        choice = ChoiceOutput(self.serving.loaded.tokenizer, job.plan)
        try:
            end = Finished("stop", None)
            async with aclosing(choice_pieces(job.runs[0], choice)) as batches:
                async for batch in batches:
                    for piece in batch:
                        if isinstance(piece, Finished):
                            end = piece
                        elif isinstance(piece, Text):
                            for e in text_events(piece):
                                yield e
                        else:
                            for e in call_events(piece):
                                yield e
            status, incomplete = self._status(end.reason)
            if not items:  # an empty answer is still a message, as in the whole response
                for e in open_message():
                    yield e
            for e in close("incomplete" if status == "incomplete" and open_item and open_item["type"] == "message"
                           else "completed"):
                yield e
            response = self.response(job, status, items, incomplete=incomplete)
            await self._keep(job, response)
            yield event(f"response.{status}", response=response)
        except Exception as err:  # a failure mid-stream ends the stream with response.failed
            if not isinstance(err, APIError):
                err = APIError(500, f"generation failed: {err}", code="internal_error")
            failed = self.response(job, "failed", items, error={"code": err.code or "server_error",
                                                                "message": err.message})
            yield event("response.failed", response=failed)
