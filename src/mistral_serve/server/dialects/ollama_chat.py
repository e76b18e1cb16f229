"""Ollama's /api/chat: the body is translated into the chat request the OpenAI chat path takes;
the outputs are rendered as Ollama's message objects, one JSON line each when streamed.

Tool calls: Ollama's `tools` are OpenAI function tools already. Its calls carry no ids and their
arguments are objects; its `tool` messages name the function they answer (`tool_name`) or
nothing. Mistral's template pairs a result with its call by id, so ids are made here: the j-th
call of message i is `call_i_j` (the same every turn, so the prompt, and its prefix cache, stay
the same), and each tool message answers the first unanswered call of the assistant message
before it (of that function, when tool_name is given). Calls in an answer are split out of the
text by the shared pieces (pieces.py) and sent as `{"function": {"name", "arguments": {...}}}`,
with their id, which a client may send back.
"""

from __future__ import annotations

import json
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator

from ..errors import bad_request
from ..protocol_ollama import ChatRequest, Message
from ..tools import ChoiceOutput
from .anthropic_messages import tool_input
from .base import Dialect, json_line
from .ollama import (
    NDJSON,
    TEXT_ONLY,
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
from .openai_chat import ChatJob, OpenAIChat, translated_chat
from .pieces import Finished, Text, choice_pieces, collect


def _arguments(arguments, where: str) -> str:
    """A call's arguments (an object, or a JSON text of one) as the chat path's JSON string."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError):
            raise bad_request(f"{where}: arguments must be a JSON object", param=where) from None
        if not isinstance(arguments, dict):
            raise bad_request(f"{where}: arguments must be a JSON object", param=where)
    return json.dumps(arguments, ensure_ascii=False)


def chat_messages(messages: list[Message]) -> list[dict]:
    """Ollama's messages as OpenAI chat messages, every tool result paired with its call's id."""
    out: list[dict] = []
    pending: list[tuple[str, str]] = []  # (id, function name) of calls not answered yet
    for i, m in enumerate(messages):
        if m.images:
            raise bad_request(TEXT_ONLY, param=f"messages.{i}.images", code="unsupported_parameter")
        content = m.content or ""
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for j, c in enumerate(m.tool_calls):
                call_id = c.id or f"call_{i}_{j}"
                calls.append({"id": call_id, "type": "function", "function": {
                    "name": c.function.name,
                    "arguments": _arguments(c.function.arguments, f"messages.{i}.tool_calls.{j}.function")}})
            pending = [(c["id"], c["function"]["name"]) for c in calls]
            out.append({"role": "assistant", "content": content, "tool_calls": calls})
        elif m.role == "tool":
            k = next((k for k, (cid, name) in enumerate(pending)
                      if (m.tool_call_id or cid) == cid and (m.tool_name or name) == name), None)
            if k is None:
                which = f" of function {m.tool_name!r}" if m.tool_name else ""
                raise bad_request(f"messages.{i}: this tool message answers no tool call{which} of the "
                                  "assistant message before it", param=f"messages.{i}", code="invalid_messages")
            call_id, _ = pending.pop(k)
            out.append({"role": "tool", "tool_call_id": call_id, "content": content})
        else:
            out.append({"role": m.role, "content": content})
    return out


def ollama_calls(calls: list[dict]) -> list[dict]:
    """The chat path's tool_calls in Ollama's shape: arguments as an object."""
    return [{"id": c["id"], "function": {"index": k, "name": c["function"]["name"],
                                          "arguments": tool_input(c["function"]["arguments"])}}
            for k, c in enumerate(calls)]


@dataclass
class OllamaChatJob(ChatJob):
    started: float = field(default_factory=time.time)


class OllamaChat(Dialect):
    media_type = NDJSON

    def __init__(self, serving) -> None:
        super().__init__(serving)
        self.chat = OpenAIChat(serving)

    def loading(self, body: ChatRequest) -> dict | None:
        """Ollama's answer to a chat with no messages (it loads the model), else None."""
        served_id(self.serving, body.model)
        return None if body.messages else load_answer(body.model, "message", {"role": "assistant", "content": ""})

    def prepare(self, body: ChatRequest, endpoint: str, key_name: str | None) -> OllamaChatJob:
        started = time.time()
        fields: dict = {"model": served_id(self.serving, body.model)}
        refuse_unreadable(body.think, None, "messages")
        fields["messages"] = chat_messages(body.messages or [])
        fields.update(sampling_fields(body.options))
        fmt = response_format(body.format)
        if fmt is not None:
            if body.tools:
                raise bad_request("format cannot be combined with tools here", param="format",
                                  code="unsupported_parameter")
            fields["response_format"] = fmt
        if body.tools:
            fields["tools"] = [{"type": "function", "function": t.function.model_dump(exclude_none=True)}
                               for t in body.tools]

        def chat_prepare() -> ChatJob:
            chat = translated_chat(fields)
            chat.stop = stop_list(body.options)  # Ollama takes more than OpenAI's 4 (the engine's limit applies)
            return self.chat.prepare(chat, endpoint, key_name)

        job = with_limits(chat_prepare, self.serving, body.options)
        return OllamaChatJob(body, job.runs, job.plan, started)

    def _head(self, job: OllamaChatJob) -> dict:
        return {"model": job.body.model, "created_at": created_at()}

    async def complete(self, job: OllamaChatJob) -> dict:
        answer = await collect(job.runs[0], ChoiceOutput(self.serving.loaded.tokenizer, job.plan))
        message: dict = {"role": "assistant", "content": answer.text}
        if answer.calls:
            message["tool_calls"] = ollama_calls(answer.calls)
        return {**self._head(job), "message": message, **final_fields(job, job.started)}

    def stream(self, job: OllamaChatJob) -> AsyncIterator[str]:
        return self._lines(job)

    async def _lines(self, job: OllamaChatJob) -> AsyncIterator[str]:
        choice = ChoiceOutput(self.serving.loaded.tokenizer, job.plan)
        try:
            async with aclosing(choice_pieces(job.runs[0], choice)) as batches:
                async for batch in batches:
                    for piece in batch:
                        if isinstance(piece, Text) and piece.text:
                            yield json_line({**self._head(job), "message": {"role": "assistant", "content": piece.text},
                                             "done": False})
                        elif isinstance(piece, Finished) and piece.calls:
                            # Ollama sends a call whole, in one object, once it is complete.
                            yield json_line({**self._head(job), "message": {
                                "role": "assistant", "content": "", "tool_calls": ollama_calls(piece.calls)},
                                "done": False})
            yield json_line({**self._head(job), "message": {"role": "assistant", "content": ""},
                             **final_fields(job, job.started)})
        except Exception as err:  # a failure mid-stream ends the stream with an error line
            yield json_line(error_line(err))

