"""Anthropic's Messages API: the body is translated into the chat request the OpenAI chat path
takes (messages, sampling fields, tools), so prompts, sampling, stop strings, tool plans and
grammars are that path's; the engine outputs are rendered as an Anthropic message or its events.

A last assistant message is a prefill, as Anthropic documents it: the answer continues that
text (the chat request's continue_final_message), and the response content is the continuation
only.

Tool calls: Anthropic `tools` become OpenAI function tools, `tool_use` blocks an assistant's
`tool_calls`, `tool_result` blocks `tool` messages; `[TOOL_CALLS]` in the output is split out by
the shared ChoiceOutput and rendered as `tool_use` blocks (ids `toolu_` + the call's id, which
map_call_ids pairs with its result when the conversation comes back).
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator

from ..errors import APIError, bad_request
from ..generation import Run
from ..protocol import ChatCompletionRequest
from ..protocol_anthropic import (
    CountTokensRequest,
    ImageBlock,
    MessagesRequest,
    TextBlock,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlock,
    ToolUseBlock,
)
from ..tools import ChoiceOutput
from .base import Dialect, sse
from .openai_chat import ChatJob, OpenAIChat, translated_chat
from .pieces import (
    CallArguments,
    CallStart,
    Finished,
    Piece,
    Text,
    choice_pieces,
    collect,
)

TEXT_ONLY = "this model reads text only: image and document content blocks are not supported"


def _text_of(blocks, param: str) -> str:
    """The text of a string or of a list of text blocks (400 on an image or document)."""
    if blocks is None:
        return ""
    if isinstance(blocks, str):
        return blocks
    parts = []
    for i, b in enumerate(blocks):
        if isinstance(b, ImageBlock):
            raise bad_request(TEXT_ONLY, param=f"{param}.{i}")
        parts.append(b.text)
    return "".join(parts)


def chat_messages(body: CountTokensRequest) -> list[dict]:
    """Anthropic's system + messages as OpenAI chat messages."""
    out: list[dict] = []
    system = _text_of(body.system, "system")
    if system:
        out.append({"role": "system", "content": system})
    for i, m in enumerate(body.messages):
        if isinstance(m.content, str):
            out.append({"role": m.role, "content": m.content})
            continue
        texts: list[str] = []
        calls: list[dict] = []
        results: list[dict] = []
        for j, b in enumerate(m.content):
            where = f"messages.{i}.content.{j}"
            if isinstance(b, ImageBlock):
                raise bad_request(TEXT_ONLY, param=where)
            if isinstance(b, TextBlock):
                texts.append(b.text)
            elif isinstance(b, ToolUseBlock):
                if m.role != "assistant":
                    raise bad_request("tool_use blocks belong in assistant messages", param=where)
                calls.append({"id": b.id, "type": "function",
                              "function": {"name": b.name, "arguments": json.dumps(b.input, ensure_ascii=False)}})
            elif isinstance(b, ToolResultBlock):
                if m.role != "user":
                    raise bad_request("tool_result blocks belong in user messages", param=where)
                content = _text_of(b.content, f"{where}.content")
                if b.is_error:
                    content = f"Error: {content}"
                results.append({"role": "tool", "tool_call_id": b.tool_use_id, "content": content})
        if m.role == "assistant":
            message: dict = {"role": "assistant", "content": "".join(texts)}
            if calls:
                message["tool_calls"] = calls
            out.append(message)
        else:
            out += results  # the results answer the calls of the assistant message before
            if texts or not results:
                out.append({"role": "user", "content": "".join(texts)})
    return out


def chat_request(body: CountTokensRequest) -> ChatCompletionRequest:
    """The chat request the OpenAI chat path takes for this body."""
    if body.thinking and body.thinking.get("type") not in (None, "disabled"):
        raise bad_request("extended thinking is not supported by this model", param="thinking")
    messages = chat_messages(body)
    fields: dict = {"model": body.model, "messages": messages}
    if messages and messages[-1]["role"] == "assistant":
        fields["continue_final_message"] = True  # a prefill
    if body.tools:
        fields["tools"] = [{"type": "function", "function": {
            "name": t.name, **({"description": t.description} if t.description else {}),
            "parameters": t.input_schema}} for t in body.tools]
    choice = body.tool_choice
    if choice is not None:
        if isinstance(choice, ToolChoiceNone):
            fields["tool_choice"] = "none"
        elif isinstance(choice, ToolChoiceAuto):
            fields["tool_choice"] = "auto"
        elif isinstance(choice, ToolChoiceAny):
            fields["tool_choice"] = "required"
        elif isinstance(choice, ToolChoiceTool):
            fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        if getattr(choice, "disable_parallel_tool_use", None):
            fields["parallel_tool_calls"] = False
    if isinstance(body, MessagesRequest):
        fields.update(max_tokens=body.max_tokens, temperature=body.temperature, stream=body.stream)
        if body.top_p is not None:
            fields["top_p"] = body.top_p
        if body.top_k is not None:
            fields["top_k"] = body.top_k
        if body.metadata and body.metadata.user_id:
            fields["user"] = body.metadata.user_id
    chat = translated_chat(fields)
    if isinstance(body, MessagesRequest) and body.stop_sequences:
        # Anthropic takes more stop strings than OpenAI's 4; the engine takes up to MAX_STOP_STRINGS.
        chat.stop = list(body.stop_sequences)
    return chat


def tool_input(arguments: str):
    """A call's arguments as the JSON object of a tool_use block. A number too large for a double
    (the grammar allows 1e999) becomes the largest one, as JSON cannot carry infinity."""
    def finite(v):
        if isinstance(v, float) and math.isinf(v):
            return math.copysign(sys.float_info.max, v)
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return v

    return finite(json.loads(arguments))


def usage(runs: list[Run]) -> dict:
    run = runs[0]
    return {"input_tokens": len(run.prompt_ids), "output_tokens": run.completion_tokens,
            "cache_read_input_tokens": run.cached_tokens, "cache_creation_input_tokens": 0}


@dataclass
class MessagesJob(ChatJob):
    stops: list[str] = field(default_factory=list)


class AnthropicMessages(Dialect):
    def __init__(self, serving) -> None:
        super().__init__(serving)
        self.chat = OpenAIChat(serving)

    def prepare(self, body: MessagesRequest, endpoint: str, key_name: str | None) -> MessagesJob:
        job = self.chat.prepare(chat_request(body), endpoint, key_name)
        return MessagesJob(body, job.runs, job.plan, stops=list(body.stop_sequences or []))

    def count_tokens(self, body: CountTokensRequest) -> dict:
        _, prompt_ids = self.chat.encode(chat_request(body))
        return {"input_tokens": len(prompt_ids)}

    def _message(self, job: MessagesJob, content: list) -> dict:
        return {"id": f"msg_{job.runs[0].id}", "type": "message", "role": "assistant", "model": job.body.model,
                "content": content, "stop_reason": None, "stop_sequence": None, "usage": usage(job.runs)}

    def _stop(self, job: MessagesJob, choice: ChoiceOutput, reason: str | None, calls) -> tuple[str, str | None]:
        """Anthropic's stop_reason and stop_sequence for the engine's finish reason."""
        if calls:
            return "tool_use", None
        if reason == "length":
            return "max_tokens", None
        tokenizer = self.serving.loaded.tokenizer
        if reason == "stop" and job.stops and choice.ids and choice.ids[-1] not in tokenizer.stop_ids:
            # A stop string ended it (the engine cuts it from the text): the first one in what was
            # decoded past the text sent.
            full = tokenizer.decode(choice.ids)
            rest = full[len(choice.sent):] if full.startswith(choice.sent) else full
            found = [(rest.find(s), k) for k, s in enumerate(job.stops) if s in rest]
            if found:
                return "stop_sequence", job.stops[min(found)[1]]
            if len(job.stops) == 1:
                return "stop_sequence", job.stops[0]
        return "end_turn", None

    async def complete(self, job: MessagesJob) -> dict:
        choice = ChoiceOutput(self.serving.loaded.tokenizer, job.plan)
        answer = await collect(job.runs[0], choice)
        content: list[dict] = [{"type": "text", "text": answer.text}] if answer.text or not answer.calls else []
        for call in answer.calls or []:
            content.append({"type": "tool_use", "id": f"toolu_{call['id']}", "name": call["function"]["name"],
                            "input": tool_input(call["function"]["arguments"])})
        stop_reason, stop_sequence = self._stop(job, choice, answer.reason, answer.calls)
        return {**self._message(job, content), "stop_reason": stop_reason, "stop_sequence": stop_sequence}

    def stream(self, job: MessagesJob) -> AsyncIterator[str]:
        return self._events(job)

    async def _events(self, job: MessagesJob) -> AsyncIterator[str]:
        run = job.runs[0]
        choice = ChoiceOutput(self.serving.loaded.tokenizer, job.plan)
        blocks = -1  # index of the open block
        open_kind: str | None = None
        started = False

        def event(kind: str, payload: dict) -> str:
            return sse({"type": kind, **payload}, event=kind)

        def open_block(kind: str, block: dict) -> list[str]:
            nonlocal blocks, open_kind
            events = close()
            blocks += 1
            open_kind = kind
            return events + [event("content_block_start", {"index": blocks, "content_block": block})]

        def close() -> list[str]:
            nonlocal open_kind
            if open_kind is None:
                return []
            open_kind = None
            return [event("content_block_stop", {"index": blocks})]

        def render(piece: Piece) -> list[str]:
            if isinstance(piece, Text) and piece.text:
                events = open_block("text", {"type": "text", "text": ""}) if open_kind != "text" else []
                return events + [event("content_block_delta",
                                       {"index": blocks, "delta": {"type": "text_delta", "text": piece.text}})]
            if isinstance(piece, CallStart):
                return open_block("tool_use", {"type": "tool_use", "id": f"toolu_{piece.id}", "name": piece.name,
                                               "input": {}})
            if isinstance(piece, CallArguments):
                return [event("content_block_delta", {"index": blocks, "delta": {
                    "type": "input_json_delta", "partial_json": piece.text}})]
            return []

        def start() -> list[str]:
            nonlocal started
            if started:
                return []
            started = True
            message = self._message(job, [])
            message["usage"]["output_tokens"] = 0
            return [event("message_start", {"message": message}), event("ping", {})]

        try:
            end = Finished("stop", None)
            async with aclosing(choice_pieces(run, choice)) as batches:
                async for batch in batches:
                    for e in start():  # after the first output: the prompt's cached tokens are known
                        yield e
                    for piece in batch:
                        if isinstance(piece, Finished):
                            end = piece
                        for e in render(piece):
                            yield e
            for e in start() + close():
                yield e
            stop_reason, stop_sequence = self._stop(job, choice, end.reason, end.calls)
            yield event("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                                          "usage": {"output_tokens": run.completion_tokens}})
            yield event("message_stop", {})
        except Exception as err:  # a failure mid-stream ends the stream with an error event
            if not isinstance(err, APIError):
                err = APIError(500, f"generation failed: {err}", code="internal_error")
            yield sse(err.anthropic_body(), event="error")
