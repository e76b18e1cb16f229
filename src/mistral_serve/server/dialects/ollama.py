"""What Ollama's /api/chat and /api/generate share: the model's names, `options` and `format`
as the chat path's fields, the answer's length under num_predict and num_ctx, and the objects'
common parts (model, created_at, done, done_reason and the timings of the final one).

Ollama's bodies are translated into the chat request (or, for raw prompts, the completions
request) the OpenAI paths take, so prompts, sampling, stop strings, grammars and tool plans are
theirs; ollama_chat.py and ollama_generate.py render the outputs as Ollama's objects.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone

from ..errors import APIError, bad_request
from ..generation import Run
from ..protocol_ollama import Options
from ..state import Serving
from .base import Job

NDJSON = "application/x-ndjson"
TEXT_ONLY = "this model reads text only: images are not supported"
# Ollama's sampling defaults, where they mean the same here. repeat_penalty has none: Ollama's
# (1.1) covers the last 64 tokens (repeat_last_n), ours the whole prompt and answer.
DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9}
# options -> the chat request's fields
SAMPLING = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
            "repeat_penalty": "repetition_penalty", "presence_penalty": "presence_penalty",
            "frequency_penalty": "frequency_penalty", "seed": "seed"}
OPTION_OF = {chat: f"options.{name}" for name, chat in SAMPLING.items()} | {"stop": "options.stop"}


def rfc3339(t: float) -> str:
    """A Unix time as Ollama writes its timestamps (RFC 3339, UTC)."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def created_at() -> str:
    return rfc3339(time.time())


def model_not_found(name: str) -> APIError:
    return APIError(404, f"model '{name}' not found", code="model_not_found", param="model")


def served_id(serving: Serving, name: str) -> str:
    """The served model's id for an Ollama model name: the id itself or `ID:latest` (any case,
    as Ollama's names); 404 in Ollama's words for another name, 503 while loading."""
    loaded, _ = serving.require_ready()
    wanted = name.lower().removesuffix(":latest")
    if wanted != loaded.card.id.lower():
        raise model_not_found(name)
    return loaded.card.id


def refuse_unreadable(think, images, where: str) -> None:
    if think not in (None, False):
        raise bad_request("this model does not think: `think` is not supported (send false or leave it out)",
                          param="think", code="unsupported_parameter")
    if images:
        raise bad_request(TEXT_ONLY, param=where, code="unsupported_parameter")


def sampling_fields(options: Options | None) -> dict:
    """The chat request's sampling fields for `options`, Ollama's defaults where absent."""
    given = options.model_dump(exclude_none=True) if options else {}
    fields = {SAMPLING[k]: v for k, v in given.items() if k in SAMPLING}
    for name, value in DEFAULTS.items():
        fields.setdefault(SAMPLING[name], value)
    if fields.get("seed") == -1:  # Ollama's "no seed"
        del fields["seed"]
    return fields


def stop_list(options: Options | None) -> list[str]:
    stop = options.stop if options else None
    return [stop] if isinstance(stop, str) else list(stop or [])


def response_format(fmt) -> dict | None:
    """`format` as the chat path's response_format: "json" a JSON object, an object a schema."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    raise bad_request(f'invalid format: "{fmt}"; expected "json" or a valid JSON Schema object', param="format")


def renamed(err: APIError) -> APIError:
    """A chat-path error about a sampling field, in the words of the option it came from."""
    option = OPTION_OF.get(err.param or "")
    if option:
        err.message = err.message.replace(err.param, option, 1)
        err.param = option
    elif err.param == "response_format" or (err.param or "").startswith("response_format."):
        err.message = err.message.replace(err.param, "format", 1)
        err.param = "format"
    return err


def limit_answer(serving: Serving, run: Run, options: Options | None) -> None:
    """The answer's length under num_predict and num_ctx (the run's params are replaced).

    num_ctx below our context bounds prompt + answer (a longer prompt is a 400); above it, ours
    applies. num_predict > 0 caps the answer (at the room left); -2 fills the context; any other
    value (Ollama's default -1) leaves the server's default cap, as a request with no max_tokens.
    """
    context = serving.engine.max_model_len
    num_ctx = options.num_ctx if options else None
    bound = min(num_ctx, context) if num_ctx else context
    prompt = len(run.prompt_ids)
    room = bound - prompt
    if room <= 0:
        if bound < context:
            raise APIError(400, f"the prompt has {prompt} tokens, which leaves no room for an answer in "
                           f"num_ctx ({num_ctx} tokens)", param="options.num_ctx", code="context_length_exceeded")
        return  # the engine refuses it at admission, naming the prompt
    predict = options.num_predict if options else None
    if predict is not None and predict > 0:
        limit = min(predict, room)
    elif predict == -2:
        limit = room
    else:
        limit = run.params.max_tokens  # the server's default cap, or None: up to the end of the context
        if limit is not None:
            limit = min(limit, room)
        elif bound < context:
            limit = room
    run.params = dataclasses.replace(run.params, max_tokens=limit)


def with_limits(prepare, serving: Serving, options: Options | None):
    """Call a chat or completions `prepare` and bound its run's answer; its errors are renamed."""
    try:
        job = prepare()
        limit_answer(serving, job.runs[0], options)
    except APIError as err:
        raise renamed(err) from None
    return job


def done_reason(run: Run) -> str:
    """Ollama's done_reason: "length" when the answer was cut, else "stop" (tool calls too)."""
    return "length" if run.finish_reasons.get(0) == "length" else "stop"


def final_fields(job: Job, started: float) -> dict:
    """The final object's fields: done, done_reason, the counts and the durations (ns)."""
    run = job.runs[0]
    end = time.time()
    ns = 1_000_000_000
    first = run.created_at + run.ttft if run.ttft is not None else end
    return {"done": True, "done_reason": done_reason(run),
            "total_duration": int((end - started) * ns),
            "load_duration": 0,  # the model stays loaded
            "prompt_eval_count": len(run.prompt_ids),
            "prompt_eval_duration": int(max(first - run.created_at, 0) * ns),
            "eval_count": run.completion_tokens,
            "eval_duration": int(max(end - first, 0) * ns)}


def load_answer(model: str, key: str, empty) -> dict:
    """Ollama's answer to a request with nothing to generate: the model is (already) loaded."""
    return {"model": model, "created_at": created_at(), key: empty, "done": True, "done_reason": "load"}


def error_line(err: Exception) -> dict:
    """A failure mid-stream, as the line that ends the stream (the status line has gone out)."""
    if not isinstance(err, APIError):
        err = APIError(500, f"generation failed: {err}", code="internal_error")
    return err.ollama_body()
