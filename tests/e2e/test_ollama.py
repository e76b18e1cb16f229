"""Ollama's API (/api/chat, /api/generate, /api/tags, /api/show, /api/ps, ...) through the official
`ollama` package, on the demo model.

The demo's weights are random, so its text means nothing; but greedy decoding is deterministic, so
the same conversation must give the same text here as on /v1/chat/completions (the dialect is a
translation over the same generation path), streamed or not, and a raw prompt the same text as on
/v1/completions. The random model never writes a tool call on its own (Ollama has no tool_choice
to force one): the calls' rendering is tested in tests/unit/test_ollama_dialect.py; here a
conversation holding calls and their results must make the same prompt as its OpenAI form.
"""

from __future__ import annotations

import json
from datetime import datetime

import httpx
import jsonschema
import ollama
import pytest
from openai import OpenAI
from support.openai_helpers import ascii_stop
from support.server_process import ServerProcess

import mistral_serve

MODEL = "open-mistral-7b"
KEY = "ollama-secret"
GREEDY = {"temperature": 0, "num_predict": 12}
ASK = [{"role": "user", "content": "Tell me a story about a cat."}]
SYSTEM = "You are terse."
FINAL = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
         "eval_duration")


@pytest.fixture(scope="module")
def ol(server) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


@pytest.fixture(scope="module")
def openai_client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


def chat(ol, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", ASK)
    kw.setdefault("options", GREEDY)
    return ol.chat(**kw)


def generate(ol, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("prompt", ASK[0]["content"])
    kw.setdefault("options", GREEDY)
    return ol.generate(**kw)


def check_final(part) -> None:
    assert part.done is True and part.done_reason in ("stop", "length")
    for name in FINAL:
        assert isinstance(getattr(part, name), int) and getattr(part, name) >= 0, name
    assert part.prompt_eval_count > 0
    stamp = datetime.fromisoformat(part.created_at.replace("Z", "+00:00"))
    assert stamp.utcoffset().total_seconds() == 0


def post(server, path: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120, **kw)


def tokens(server, messages) -> list[int]:
    return post(server, "/tokenize", {"messages": messages}).json()["tokens"]


# ---- /api/chat -------------------------------------------------------------------------------

def test_chat_answers_in_ollama_shape(ol):
    r = chat(ol)
    assert r.model == MODEL and r.message.role == "assistant" and r.message.content
    check_final(r)
    assert r.done_reason == "length" and r.eval_count == 12


def test_stream_parts_make_the_whole_answer(ol):
    whole = chat(ol)
    parts = list(chat(ol, stream=True))
    assert all(p.done is False for p in parts[:-1]) and all(p.message.content for p in parts[:-1])
    final = parts[-1]
    check_final(final)
    assert final.message.content == ""
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert (final.eval_count, final.prompt_eval_count) == (whole.eval_count, whole.prompt_eval_count)


def test_greedy_text_equals_the_chat_completions_text(ol, openai_client):
    messages = [{"role": "system", "content": SYSTEM}] + ASK
    r = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0)
    options = {"temperature": 0, "num_predict": 16}
    whole = chat(ol, messages=messages, options=options)
    streamed = list(chat(ol, messages=messages, options=options, stream=True))
    assert whole.message.content == r.choices[0].message.content
    assert "".join(p.message.content for p in streamed) == r.choices[0].message.content
    assert whole.prompt_eval_count == r.usage.prompt_tokens and whole.eval_count == r.usage.completion_tokens


def test_model_names_with_and_without_latest_are_the_model(ol):
    text = chat(ol).message.content
    assert chat(ol, model=f"{MODEL}:latest").message.content == text
    assert chat(ol, model=MODEL.upper()).model == MODEL.upper()  # echoed as given
    with pytest.raises(ollama.ResponseError) as err:
        chat(ol, model="llama3.2")
    assert err.value.status_code == 404 and err.value.error == "model 'llama3.2' not found"
    with pytest.raises(ollama.ResponseError) as err:
        chat(ol, model=f"{MODEL}:7b")
    assert err.value.status_code == 404


def test_an_empty_chat_loads_the_model(ol):
    r = ol.chat(model=MODEL, messages=[])
    assert r.done is True and r.done_reason == "load" and r.message.content == ""
    r = ol.generate(model=MODEL, prompt="", keep_alive=0)
    assert r.done is True and r.done_reason == "load" and r.response == ""
    with pytest.raises(ollama.ResponseError) as err:
        ol.generate(model="nope", prompt="")
    assert err.value.status_code == 404


# ---- /api/generate ------------------------------------------------------------------------------

def test_generate_through_the_template_is_the_chat(ol, server):
    g = generate(ol, system=SYSTEM)
    c = chat(ol, messages=[{"role": "system", "content": SYSTEM}] + ASK)
    assert g.response == c.message.content and g.prompt_eval_count == c.prompt_eval_count
    check_final(g)
    assert g.context[:g.prompt_eval_count] == tokens(server, [{"role": "system", "content": SYSTEM}] + ASK)
    assert len(g.context) == g.prompt_eval_count + g.eval_count
    parts = list(generate(ol, system=SYSTEM, stream=True))
    assert "".join(p.response for p in parts) == g.response and parts[-1].context == g.context


def test_a_context_continues_the_conversation(ol, server):
    first = generate(ol)
    again = generate(ol, prompt="And then?", context=first.context)
    turn = tokens(server, [{"role": "user", "content": "And then?"}])[1:]  # without BOS
    closed = 0 if first.context[-1] == 2 else 1  # the cut answer's turn is ended with </s>
    assert again.prompt_eval_count == len(first.context) + closed + len(turn)
    assert again.context[:len(first.context)] == first.context


def test_raw_prompts_are_the_completions_path(ol, openai_client):
    prompt = "[INST] Tell me a story [/INST]"
    r = openai_client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0)
    g = generate(ol, prompt=prompt, raw=True)
    assert g.response == r.choices[0].text and g.prompt_eval_count == r.usage.prompt_tokens
    assert g.context is None  # as Ollama: a raw answer has no context
    streamed = list(generate(ol, prompt=prompt, raw=True, stream=True))
    assert "".join(p.response for p in streamed) == g.response


def test_a_template_renders_the_prompt(ol):
    template = "{{ if .System }}{{ .System }} {{ end }}Q: {{ .Prompt }}\nA:{{ .Response }}</s>"
    g = generate(ol, template=template, system="Be brief.", prompt="Why?")
    raw = generate(ol, raw=True, prompt="Be brief. Q: Why?\nA:")
    assert g.response == raw.response and g.context  # templated (not raw): a context
    with pytest.raises(ollama.ResponseError) as err:
        generate(ol, template="{{ range .Messages }}{{ .Content }}{{ end }}")
    assert err.value.status_code == 400 and "range .Messages" in err.value.error


# ---- options ---------------------------------------------------------------------------------

def test_num_predict_stop_and_seed(ol):
    assert chat(ol, options={"temperature": 0, "num_predict": 3}).eval_count == 3
    full = chat(ol, options={"temperature": 0, "num_predict": 24}).message.content
    stop = ascii_stop(full)
    cut = chat(ol, options={"temperature": 0, "num_predict": 24, "stop": [stop, "never-zz"]})
    assert cut.message.content == full[:full.find(stop)] and cut.done_reason == "stop"
    sampled = [chat(ol, options={"temperature": 1.0, "seed": 7, "num_predict": 12}).message.content for _ in range(2)]
    assert sampled[0] == sampled[1]
    # Ignored options are accepted; repeat_penalty is our repetition penalty.
    assert chat(ol, options={**GREEDY, "num_gpu": 1, "mirostat": 2, "num_thread": 4}).message.content == \
        chat(ol).message.content
    assert chat(ol, options={**GREEDY, "repeat_penalty": 1.5}).eval_count == 12


def test_num_ctx_bounds_prompt_and_answer(ol):
    prompt = chat(ol, options={"temperature": 0, "num_predict": 1}).prompt_eval_count
    r = chat(ol, options={"temperature": 0, "num_ctx": prompt + 3})
    assert r.eval_count <= 3 and r.done_reason == "length"
    assert chat(ol, options={"temperature": 0, "num_ctx": prompt + 4, "num_predict": -2}).eval_count <= 4
    with pytest.raises(ollama.ResponseError) as err:
        chat(ol, options={"num_ctx": prompt})
    assert err.value.status_code == 400 and "num_ctx" in err.value.error


def test_bad_options_are_refused_naming_them(ol):
    for options, name in [({"temperature": "hot"}, "options.temperature"), ({"num_predict": "8"}, "options.num_predict"),
                          ({"temperature": 5}, "options.temperature"), ({"repeat_penalty": 0}, "options.repeat_penalty"),
                          ({"top_p": 0}, "options.top_p"), ({"stop": [""]}, "options.stop")]:
        with pytest.raises(ollama.ResponseError) as err:
            chat(ol, options=options)
        assert err.value.status_code == 400 and name in err.value.error, (options, err.value.error)


# ---- format -----------------------------------------------------------------------------------

def test_format_json_parses(ol):
    r = chat(ol, format="json", options={"temperature": 0, "num_predict": 60})
    assert isinstance(json.loads(r.message.content), dict)
    g = generate(ol, format="json", options={"temperature": 0, "num_predict": 60})
    assert isinstance(json.loads(g.response), dict)


def test_format_schema_is_followed(ol):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                               "ok": {"type": "boolean"}},
              "required": ["name", "age", "ok"], "additionalProperties": False}
    r = chat(ol, format=schema, options={"temperature": 0, "num_predict": 80})
    jsonschema.validate(json.loads(r.message.content), schema)
    with pytest.raises(ollama.ResponseError) as err:
        chat(ol, format={"type": "nonsense"})
    assert err.value.status_code == 400 and "format" in err.value.error


def test_an_unknown_format_is_refused(server):
    r = post(server, "/api/chat", {"model": MODEL, "messages": ASK, "format": "xml"})
    assert r.status_code == 400 and r.json() == {"error": 'invalid format: "xml"; expected "json" or a valid '
                                                           'JSON Schema object'}


# ---- tools ------------------------------------------------------------------------------------

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ROUND_TRIP = [{"role": "user", "content": "Weather in Paris and Rome?"},
              {"role": "assistant", "content": "", "tool_calls": [
                  {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                  {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},
              {"role": "tool", "tool_name": "get_weather", "content": "18 degrees, sunny"},
              {"role": "tool", "content": "21 degrees, cloudy"}]


def test_tools_are_offered_to_the_model(ol):
    plain = chat(ol, messages=ROUND_TRIP[:1])
    offered = chat(ol, messages=ROUND_TRIP[:1], tools=[WEATHER])
    assert offered.prompt_eval_count > plain.prompt_eval_count and offered.done
    assert "tools" in ol.show(MODEL).capabilities


def test_a_tool_round_trip_makes_the_openai_prompt(ol, openai_client):
    """Calls without ids and results by name or order: paired as the OpenAI conversation with
    the ids the dialect makes (call_<message>_<call>) pairs them, so the prompt is the same."""
    r = chat(ol, messages=ROUND_TRIP, tools=[WEATHER])
    openai_form = [ROUND_TRIP[0],
                   {"role": "assistant", "content": "", "tool_calls": [
                       {"id": f"call_1_{j}", "type": "function", "function": {
                           "name": "get_weather", "arguments": json.dumps({"city": city})}}
                       for j, city in enumerate(["Paris", "Rome"])]},
                   {"role": "tool", "tool_call_id": "call_1_0", "content": "18 degrees, sunny"},
                   {"role": "tool", "tool_call_id": "call_1_1", "content": "21 degrees, cloudy"}]
    o = openai_client.chat.completions.create(model=MODEL, messages=openai_form, tools=[WEATHER], max_tokens=12,
                                              temperature=0)
    assert r.prompt_eval_count == o.usage.prompt_tokens
    assert r.message.content == (o.choices[0].message.content or "")
    with pytest.raises(ollama.ResponseError) as err:
        chat(ol, messages=ROUND_TRIP + [{"role": "tool", "content": "one too many"}], tools=[WEATHER])
    assert err.value.status_code == 400 and "answers no tool call" in err.value.error


# ---- errors ------------------------------------------------------------------------------------

def test_what_the_model_cannot_read_or_do_is_refused(ol):
    with pytest.raises(ollama.ResponseError) as err:
        chat(ol, messages=[{"role": "user", "content": "What is this?", "images": [b"\x89PNG fake"]}])
    assert err.value.status_code == 400 and "text only" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        generate(ol, images=[b"\x89PNG fake"])
    assert err.value.status_code == 400 and "text only" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        chat(ol, think=True)
    assert err.value.status_code == 400 and "think" in err.value.error
    assert chat(ol, think=False).done
    with pytest.raises(ollama.ResponseError) as err:
        generate(ol, suffix="    return result")
    assert err.value.status_code == 400 and "suffix" in err.value.error


@pytest.mark.parametrize("call, says", [
    (lambda c: c.embed(model=MODEL, input="hello"), "embeddings"),
    (lambda c: c.embeddings(model=MODEL, prompt="hello"), "embeddings"),
    (lambda c: c.pull(MODEL), "--model"),
    (lambda c: c.push(MODEL), "--model"),
    (lambda c: c.create(model="mine", from_=MODEL), "--model"),
    (lambda c: c.delete(MODEL), "--model"),
    (lambda c: c.copy(MODEL, "mine"), "--model"),
])
def test_what_is_not_served_here_says_so(ol, call, says):
    with pytest.raises(ollama.ResponseError) as err:
        call(ol)
    assert err.value.status_code == 400 and says in err.value.error and "not supported here" in err.value.error


def test_errors_on_ollama_paths_are_in_ollamas_shape(server):
    r = post(server, "/api/chat", {"messages": ASK})
    assert r.status_code == 400 and set(r.json()) == {"error"} and "model" in r.json()["error"]
    r = post(server, "/api/chat", {"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]})
    assert r.status_code == 400 and "messages.0.role" in r.json()["error"]
    r = httpx.get(server.url + "/api/nothing-here", timeout=30)
    assert r.status_code == 404 and r.json() == {"error": "Not found: /api/nothing-here"}
    r = httpx.get(server.url + "/api/chat", timeout=30)
    assert r.status_code == 405 and set(r.json()) == {"error"}
    # The hub's paths keep their own shape.
    r = httpx.get(server.url + "/api/ai/models/nope", timeout=30)
    assert r.status_code == 404 and r.json()["status"] == "error"


# ---- /api/tags, /api/show, /api/ps, /api/version, HEAD / ----------------------------------------

def test_list_show_and_ps_describe_the_served_model(ol):
    [listed] = ol.list().models
    assert listed.model == f"{MODEL}:latest" and listed.size > 0 and len(listed.digest) == 64
    assert listed.details.family == "llama" and listed.details.format in ("gguf", "safetensors")
    assert listed.details.parameter_size.endswith(("M", "B")) and listed.details.quantization_level
    shown = ol.show(MODEL)
    assert shown.details == listed.details and shown.capabilities[0] == "completion"
    info = shown.modelinfo
    assert info["general.architecture"] == "llama" and info["llama.context_length"] == 32768
    assert info["llama.block_count"] > 0 and info["general.parameter_count"] > 0
    assert "{{ .Prompt }}" in shown.template and "temperature" in shown.parameters
    assert f"FROM {MODEL}" in shown.modelfile
    assert ol.show(f"{MODEL}:latest").modelinfo == info
    with pytest.raises(ollama.ResponseError) as err:
        ol.show("nope")
    assert err.value.status_code == 404
    [running] = ol.ps().models
    assert running.model == f"{MODEL}:latest" and running.size == listed.size and running.size_vram == 0
    assert running.expires_at.year > 2100 and running.context_length == 32768


def test_version_and_liveness(server):
    assert httpx.get(server.url + "/api/version", timeout=30).json() == {"version": mistral_serve.__version__}
    head = httpx.head(server.url + "/", timeout=30)
    assert head.status_code == 200
    page = httpx.get(server.url + "/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


# ---- the wire ---------------------------------------------------------------------------------

def test_ndjson_framing(server):
    body = {"model": MODEL, "messages": ASK, "options": {"temperature": 0, "num_predict": 5}}
    with httpx.stream("POST", server.url + "/api/chat", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        raw = r.read().decode()
    assert raw.endswith("\n")
    lines = [json.loads(line) for line in raw.splitlines()]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert lines[-1]["eval_count"] == 5 and lines[-1]["done_reason"] == "length"
    whole = post(server, "/api/chat", {**body, "stream": False})
    assert whole.headers["content-type"] == "application/json"
    assert whole.json()["message"]["content"] == "".join(line["message"]["content"] for line in lines)


def test_a_body_is_json_whatever_its_content_type(server):
    """As `curl URL -d '{...}'` sends it, in Ollama's documentation."""
    body = json.dumps({"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    r = httpx.post(server.url + "/api/generate", content=body, timeout=120,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["done"] is True


def test_usage_is_logged_with_the_endpoint(server, ol):
    for path, ask in (("/api/chat", chat), ("/api/generate", generate)):
        r = ask(ol, options={"temperature": 0, "num_predict": 3})
        [row] = httpx.get(server.url + "/api/ai/generations", params={"limit": 1}, timeout=30).json()["data"]
        assert row["endpoint"] == path and row["status"] == 200
        assert row["completion_tokens"] == r.eval_count and row["prompt_tokens"] == r.prompt_eval_count


@pytest.fixture(scope="module")
def keyed(demo_data_dir):
    proc = ServerProcess(demo_data_dir, "--api-key", KEY).wait_ready()
    yield proc
    proc.stop()


def test_a_keyed_server_takes_the_bearer_key(keyed):
    good = ollama.Client(host=keyed.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert chat(good, options={"num_predict": 2}).done
    assert good.list().models
    bad = ollama.Client(host=keyed.url, timeout=120)
    with pytest.raises(ollama.ResponseError) as err:
        chat(bad)
    assert err.value.status_code == 401 and "API key" in err.value.error
    r = httpx.get(keyed.url + "/api/tags", timeout=30)
    assert r.status_code == 401 and set(r.json()) == {"error"}
    assert httpx.head(keyed.url + "/", timeout=30).status_code == 200  # liveness needs no key
