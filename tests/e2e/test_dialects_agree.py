"""One engine, every dialect: the same conversation, greedy, gives the same text and the same prompt
through OpenAI's chat completions and Responses API, Anthropic's Messages API and Ollama's chat
(each with its official client), streamed or not; each dialect refuses the same mistake in its
own error shape; and every dialect's requests are in the generation log, the usage and the
metrics.

The demo model's weights are random, so the text means nothing; greedy decoding makes it the
same for the same prompt, which is what is compared.
"""

from __future__ import annotations

import anthropic
import httpx
import ollama
import pytest
from openai import OpenAI

from support.server_process import ServerProcess, fresh_data_dir

MODEL = "open-mistral-7b"
N = 8  # tokens generated
SYSTEM = "You answer in one sentence."
TURNS = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
         {"role": "user", "content": "Tell me a story about a cat."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_data_dir):
    """A server of its own, so that its log and metrics hold this module's requests only."""
    proc = ServerProcess(fresh_data_dir(tmp_path_factory, demo_data_dir, "dialects"),
                         env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def clients(server):
    return {"openai": OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120),
            "anthropic": anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0, timeout=120),
            "ollama": ollama.Client(host=server.url, timeout=120)}


def chat(c, stream: bool) -> tuple[str, int]:
    messages = [{"role": "system", "content": SYSTEM}, *TURNS]
    if not stream:
        r = c["openai"].chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=N)
        return r.choices[0].message.content, r.usage.prompt_tokens
    chunks = list(c["openai"].chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=N,
                                                      stream=True, stream_options={"include_usage": True}))
    return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices), chunks[-1].usage.prompt_tokens


def responses(c, stream: bool) -> tuple[str, int]:
    kw = {"model": MODEL, "instructions": SYSTEM, "input": TURNS, "temperature": 0, "max_output_tokens": N}
    if not stream:
        r = c["openai"].responses.create(**kw)
        return r.output_text, r.usage.input_tokens
    events = list(c["openai"].responses.create(**kw, stream=True))
    return ("".join(e.delta for e in events if e.type == "response.output_text.delta"),
            events[-1].response.usage.input_tokens)


def messages(c, stream: bool) -> tuple[str, int]:
    kw = {"model": MODEL, "system": SYSTEM, "messages": TURNS, "max_tokens": N, "extra_body": {"temperature": 0}}
    if not stream:
        m = c["anthropic"].messages.create(**kw)
        return "".join(b.text for b in m.content if b.type == "text"), m.usage.input_tokens
    with c["anthropic"].messages.stream(**kw) as s:
        text = "".join(s.text_stream)
        return text, s.get_final_message().usage.input_tokens


def ollama_chat(c, stream: bool) -> tuple[str, int]:
    kw = {"model": MODEL, "messages": [{"role": "system", "content": SYSTEM}, *TURNS],
          "options": {"temperature": 0, "num_predict": N}}
    if not stream:
        r = c["ollama"].chat(**kw)
        return r.message.content, r.prompt_eval_count
    parts = list(c["ollama"].chat(**kw, stream=True))
    return "".join(p.message.content for p in parts), parts[-1].prompt_eval_count


DIALECTS = {"chat": chat, "responses": responses, "messages": messages, "ollama": ollama_chat}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_same_conversation_is_the_same_prompt_and_text_in_every_dialect(clients, stream):
    answers = {name: call(clients, stream) for name, call in DIALECTS.items()}
    reference = chat(clients, False)
    assert reference[0] and reference[1] > 20
    assert answers == {name: reference for name in DIALECTS}


# ---- the same mistake, each in its own shape ---------------------------------------------------------

ASK = [{"role": "user", "content": "Hi"}]
UNKNOWN = [
    ("/v1/chat/completions", {"model": "nope", "messages": ASK}),
    ("/v1/responses", {"model": "nope", "input": "Hi"}),
    ("/v1/messages", {"model": "nope", "messages": ASK, "max_tokens": 4}),
    ("/api/chat", {"model": "nope", "messages": ASK, "stream": False}),
    ("/api/ai/chat/completions", {"model": "nope", "messages": ASK}),
]


def shape(body: dict) -> str:
    if body.get("type") == "error" and set(body["error"]) == {"type", "message"}:
        return "anthropic"
    if isinstance(body.get("error"), str) and set(body) == {"error"}:
        return "ollama"
    if body.get("status") == "error" and set(body["error"]) == {"type", "title", "detail"}:
        return "hub"
    if set(body.get("error", {})) == {"message", "type", "param", "code"}:
        return "openai"
    return "unknown"


def test_an_unknown_model_is_a_404_in_each_dialects_shape(server):
    got = {path: httpx.post(server.url + path, json=body, timeout=30) for path, body in UNKNOWN}
    assert {path: r.status_code for path, r in got.items()} == {path: 404 for path, _ in UNKNOWN}
    assert [shape(r.json()) for r in got.values()] == ["openai", "openai", "anthropic", "ollama", "hub"]
    assert got["/v1/messages"].json()["error"]["type"] == "not_found_error"
    assert got["/api/chat"].json() == {"error": "model 'nope' not found"}


def test_the_clients_raise_their_own_errors(clients):
    import openai

    with pytest.raises(openai.NotFoundError):
        clients["openai"].responses.create(model="nope", input="Hi")
    with pytest.raises(anthropic.NotFoundError):
        clients["anthropic"].messages.create(model="nope", messages=ASK, max_tokens=4)
    with pytest.raises(ollama.ResponseError) as err:
        clients["ollama"].chat(model="nope", messages=ASK)
    assert err.value.status_code == 404 and "not found" in err.value.error


# ---- every dialect counted --------------------------------------------------------------------------

ENDPOINTS = {"/v1/chat/completions", "/v1/responses", "/v1/messages", "/api/chat"}


def test_every_dialect_is_logged_and_counted(server, clients):
    for call in DIALECTS.values():
        call(clients, False)
    log = httpx.get(server.url + "/api/ai/generations", params={"limit": 100}, timeout=30).json()["data"]
    logged = {g["endpoint"] for g in log if g["status"] == 200}
    assert ENDPOINTS <= logged
    for endpoint in ENDPOINTS:
        rows = [g for g in log if g["endpoint"] == endpoint and g["status"] == 200]
        assert all(g["completion_tokens"] == N and g["prompt_tokens"] > 20 for g in rows), endpoint
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    for endpoint in ENDPOINTS:
        assert f'mistral_serve_requests_total{{route="{endpoint}",status="200"}}' in metrics, endpoint
