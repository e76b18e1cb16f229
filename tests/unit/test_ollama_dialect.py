"""Ollama's dialect without a server: the template subset, `options` as sampling fields, the
answer's length under num_predict / num_ctx, tool-call ids paired across a conversation, calls
rendered in Ollama's shape (the demo's random weights never write one on their own), a failure
mid-stream, and what /api/show says of a tokenizer."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from support.engine_helpers import tokenizer

from mistral_serve.engine.engine import CompletionDelta, RequestOutput
from mistral_serve.engine.params import SamplingParams
from mistral_serve.server.dialects.ollama import (
    limit_answer,
    response_format,
    sampling_fields,
    stop_list,
)
from mistral_serve.server.dialects.ollama_chat import (
    OllamaChat,
    OllamaChatJob,
    chat_messages,
)
from mistral_serve.server.dialects.ollama_models import (
    one_turn_template,
    parameter_size,
)
from mistral_serve.server.dialects.ollama_template import TemplateError, render
from mistral_serve.server.errors import APIError
from mistral_serve.server.protocol_ollama import ChatRequest, Message, Options
from mistral_serve.server.tools import TOOL_CALLS, ToolPlan

# ---- the template subset -----------------------------------------------------------------------

MISTRAL = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }} [/INST]"


@pytest.mark.parametrize("template, system, expected", [
    (MISTRAL, "Be terse.", "[INST] Be terse.\n\nHi [/INST]"),
    (MISTRAL, "", "[INST] Hi [/INST]"),
    ("{{.System}}|{{.Prompt}}", "S", "S|Hi"),
    ("{{ if .System }}<s>{{ .System }}</s>{{ else }}<none>{{ end }}{{ .Prompt }}", "", "<none>Hi"),
    ("{{ if .Prompt }}{{ if .System }}{{ .System }}: {{ end }}{{ .Prompt }}{{ end }}", "S", "S: Hi"),
    ("USER: {{ .Prompt }}\nASSISTANT: {{ .Response }}</s>", "", "USER: Hi\nASSISTANT: "),
    ("  {{- .Prompt -}}  \n  !", "", "Hi!"),
    ("{{/* a comment */}}{{ .Prompt }}", "", "Hi"),
])
def test_the_template_subset_renders_as_go_does(template, system, expected):
    assert render(template, system=system, prompt="Hi") == expected


@pytest.mark.parametrize("template, says", [
    ("{{ range .Messages }}{{ .Content }}{{ end }}", "range .Messages"),
    ("{{ .Messages }}", ".Messages"),
    ('{{ printf "%s" .Prompt }}', "printf"),
    ("{{ if .System }}x", "never closed"),
    ("x{{ end }}", "without an {{ if }}"),
    ("{{ .Prompt", "never closed"),
    ("{{ if .Response }}x{{ end }}", ".Response"),
])
def test_anything_else_is_refused_naming_it(template, says):
    with pytest.raises(TemplateError) as err:
        render(template, system="", prompt="Hi")
    assert says in str(err.value)


# ---- options ---------------------------------------------------------------------------------

def test_options_map_onto_sampling_with_ollamas_defaults():
    assert sampling_fields(None) == {"temperature": 0.8, "top_k": 40, "top_p": 0.9}
    fields = sampling_fields(Options(temperature=0, top_k=1, repeat_penalty=1.2, presence_penalty=0.5,
                                     frequency_penalty=0.25, min_p=0.1, seed=7))
    assert fields == {"temperature": 0.0, "top_k": 1, "top_p": 0.9, "repetition_penalty": 1.2,
                      "presence_penalty": 0.5, "frequency_penalty": 0.25, "min_p": 0.1, "seed": 7}
    assert "seed" not in sampling_fields(Options(seed=-1))  # Ollama's "random"
    assert "repetition_penalty" not in sampling_fields(Options())  # no default: not Ollama's meaning


def test_ignored_options_are_accepted_and_types_checked():
    options = Options.model_validate({"num_gpu": 1, "mirostat": 2, "num_thread": 8, "temperature": 1})
    assert options.temperature == 1.0
    with pytest.raises(ValueError):
        Options.model_validate({"temperature": "hot"})
    with pytest.raises(ValueError):
        Options.model_validate({"num_predict": "8"})


def test_stop_and_format():
    assert stop_list(Options(stop=["a", "b"])) == ["a", "b"] and stop_list(Options(stop="x")) == ["x"]
    assert stop_list(None) == []
    assert response_format(None) is None and response_format("") is None
    assert response_format("json") == {"type": "json_object"}
    assert response_format({"type": "object"})["json_schema"]["schema"] == {"type": "object"}
    with pytest.raises(APIError) as err:
        response_format("xml")
    assert err.value.status == 400 and "xml" in err.value.message


def _limited(prompt: int, options: Options | None, default: int | None = 512, context: int = 100) -> int | None:
    serving = SimpleNamespace(engine=SimpleNamespace(max_model_len=context))
    run = SimpleNamespace(prompt_ids=[1] * prompt, params=SamplingParams(max_tokens=default))
    limit_answer(serving, run, options)
    return run.params.max_tokens


def test_num_predict_and_num_ctx_bound_the_answer():
    assert _limited(10, None, default=50) == 50  # the server's default cap
    assert _limited(10, None, default=None) is None  # none: up to the end of the context
    assert _limited(10, Options(num_predict=8)) == 8
    assert _limited(95, Options(num_predict=8)) == 5  # at most the room left
    assert _limited(10, Options(num_predict=-1), default=50) == 50
    assert _limited(10, Options(num_predict=0), default=50) == 50
    assert _limited(10, Options(num_predict=-2)) == 90  # fill the context
    assert _limited(10, Options(num_ctx=30), default=None) == 20  # num_ctx bounds prompt + answer
    assert _limited(10, Options(num_ctx=30, num_predict=-2)) == 20
    assert _limited(10, Options(num_ctx=30, num_predict=5)) == 5
    assert _limited(10, Options(num_ctx=10_000, num_predict=-2)) == 90  # capped to our context
    with pytest.raises(APIError) as err:
        _limited(30, Options(num_ctx=30))
    assert err.value.status == 400 and err.value.param == "options.num_ctx"


# ---- tool calls --------------------------------------------------------------------------------

def test_tool_results_are_paired_with_generated_ids():
    messages = [Message.model_validate(m) for m in [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
            {"function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]},
        {"role": "tool", "tool_name": "add", "content": "3"},
        {"role": "tool", "content": "18 degrees"},
        {"role": "tool", "tool_name": "get_weather", "content": "21 degrees"}]]
    out = chat_messages(messages)
    calls = out[1]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_1_0", "call_1_1", "call_1_2"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert json.loads(calls[2]["function"]["arguments"]) == {"a": 1, "b": 2}
    # by name first, else the first call not answered yet, in order
    assert [m["tool_call_id"] for m in out[2:]] == ["call_1_2", "call_1_0", "call_1_1"]
    assert out[0] == {"role": "user", "content": "Weather in Paris and Rome?"}


@pytest.mark.parametrize("tool", [{"role": "tool", "content": "x"},
                                  {"role": "tool", "tool_name": "other", "content": "x"}])
def test_a_result_with_no_call_to_answer_is_refused(tool):
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
                {"role": "tool", "tool_name": "f", "content": "done"}, tool]
    with pytest.raises(APIError) as err:
        chat_messages([Message.model_validate(m) for m in messages])
    assert err.value.status == 400 and err.value.param == "messages.3"


def test_images_are_refused():
    with pytest.raises(APIError) as err:
        chat_messages([Message(role="user", content="what is this?", images=["AAAA"])])
    assert "text only" in err.value.message and err.value.param == "messages.0.images"


@dataclass
class FakeRun:
    """A run whose engine outputs are given: each delta is one output."""

    deltas: list[CompletionDelta]
    fail: Exception | None = None
    prompt_ids: list[int] = field(default_factory=lambda: [1, 3, 4])
    finish_reasons: dict = field(default_factory=dict)
    completion_tokens: int = 0
    ttft: float | None = 0.001
    created_at: float = field(default_factory=time.time)

    async def outputs(self):
        for d in self.deltas:
            self.completion_tokens += len(d.token_ids)
            if d.finish_reason:
                self.finish_reasons[d.index] = d.finish_reason
            yield RequestOutput("r", [d], len(self.prompt_ids), 0, d.finish_reason is not None)
        if self.fail is not None:
            raise self.fail


def _calling_job(fail: Exception | None = None) -> tuple[OllamaChat, OllamaChatJob]:
    tok = tokenizer()
    trigger = tok.control_token(TOOL_CALLS)
    call = tok.encode('[{"name": "get_weather", "arguments": {"city": "Paris"}}]', bos=False)
    text = tok.encode("Sure", bos=False)
    deltas = [CompletionDelta(0, "Sure", text, [], None), CompletionDelta(0, "", [trigger], [], None)]
    deltas += [CompletionDelta(0, "", [t], [], None) for t in call[:-1]]
    deltas.append(CompletionDelta(0, "", [call[-1], tok.eos_id], [], None if fail else "stop"))
    plan = ToolPlan(tools=[{"type": "function", "function": {"name": "get_weather"}}], names={"get_weather"},
                    trigger=trigger)
    dialect = OllamaChat(SimpleNamespace(loaded=SimpleNamespace(tokenizer=tok)))
    body = ChatRequest(model="open-mistral-7b:latest", messages=[Message(role="user", content="Weather?")])
    return dialect, OllamaChatJob(body, [FakeRun(deltas, fail)], plan)


async def _lines(dialect, job) -> list[dict]:
    return [json.loads(line) async for line in dialect.stream(job)]


def test_calls_are_rendered_in_ollamas_shape():
    dialect, job = _calling_job()
    answer = asyncio.run(dialect.complete(job))
    assert answer["message"]["content"] == "Sure"
    [call] = answer["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and call["function"]["arguments"] == {"city": "Paris"}
    assert len(call["id"]) == 9
    assert answer["done"] is True and answer["done_reason"] == "stop" and answer["model"] == "open-mistral-7b:latest"
    assert job.runs[0].finish_reasons[0] == "tool_calls"  # as the generation log records it

    dialect, job = _calling_job()
    lines = asyncio.run(_lines(dialect, job))
    assert lines[0]["message"] == {"role": "assistant", "content": "Sure"} and lines[0]["done"] is False
    calls = [line for line in lines if line["message"].get("tool_calls")]
    assert len(calls) == 1 and calls[0]["message"]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert lines[-1]["done"] is True and lines[-1]["message"]["content"] == ""
    assert isinstance(lines[-1]["eval_duration"], int) and lines[-1]["eval_count"] == job.runs[0].completion_tokens


def test_a_failure_mid_stream_ends_it_with_an_error_line():
    dialect, job = _calling_job(fail=APIError(503, "the engine has stopped"))
    lines = asyncio.run(_lines(dialect, job))
    assert lines[-1] == {"error": "the engine has stopped"}
    assert not any(line.get("done") for line in lines)


# ---- /api/show ---------------------------------------------------------------------------------

def test_the_one_turn_template_is_what_the_chat_template_renders(tokenizers):
    for name, tok in tokenizers.items():
        loaded = SimpleNamespace(tokenizer=tok)
        template = one_turn_template(loaded)
        assert template, name
        for system in ("", "Be terse."):
            messages = ([{"role": "system", "content": system}] if system else []) + \
                [{"role": "user", "content": "Hi there"}]
            ids = tok.encode_chat(messages)
            expected = b"".join(tok.token_bytes(i) for i in ids[1:]).decode()
            assert render(template, system=system, prompt="Hi there") == expected, (name, template)


def test_sizes_are_written_as_ollama_writes_them():
    assert parameter_size(7_241_732_096) == "7.2B" and parameter_size(19_794_176) == "19.8M"
    assert parameter_size(8_000_000_000) == "8B"
