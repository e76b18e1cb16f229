"""The official `openai` package against a live server: /v1/completions (lists of prompts, token-id
prompts, echo, logprobs and their offsets, streaming, stop) and the model list.

Why the demo model serves here: see tests/support/openai_helpers.py.
"""

from __future__ import annotations

import httpx
import pytest
from openai import NotFoundError, OpenAI

from support.openai_helpers import MODEL, ascii_stop


@pytest.fixture(scope="module")
def server(openai_server):
    """The `openai` client tests' open server (tests/e2e/conftest.py), shared by the test_openai_*.py
    files; `client` (the conftest's) talks to it."""
    return openai_server


# ---- /v1/completions -----------------------------------------------------------------------------

PROMPT = "Once upon a time"


def complete(client: OpenAI, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("prompt", PROMPT)
    kw.setdefault("max_tokens", 8)
    return client.completions.create(**kw)


def test_completion_basic(client):
    r = complete(client, temperature=0)
    assert r.object == "text_completion" and r.model == MODEL and r.id.startswith("cmpl-")
    assert len(r.choices) == 1 and r.choices[0].index == 0 and r.choices[0].text
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8
    assert complete(client, temperature=0).choices[0].text == r.choices[0].text


def test_completion_list_of_prompts(client):
    one = complete(client, temperature=0, prompt="The sky").choices[0].text
    two = complete(client, temperature=0, prompt="A dog").choices[0].text
    assert one != two
    r = complete(client, temperature=0, prompt=["The sky", "A dog"], n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    # Choice k*n + i is sample i of prompt k.
    assert [c.text for c in r.choices] == [one, one, two, two]
    assert r.usage.completion_tokens == 32


def test_completion_token_id_prompt_equals_text_prompt(server, client):
    ids = httpx.post(server.url + "/tokenize", json={"prompt": PROMPT}).json()["tokens"]
    by_ids = complete(client, temperature=0, prompt=ids).choices[0].text
    assert by_ids == complete(client, temperature=0).choices[0].text


def test_completion_echo(client):
    plain = complete(client, temperature=0).choices[0].text
    echoed = complete(client, temperature=0, echo=True).choices[0].text
    assert echoed.startswith(PROMPT)
    assert echoed == PROMPT + plain


def test_completion_logprobs(client):
    r = complete(client, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8
    assert all(v <= 0.0 for v in lp.token_logprobs)
    for top in lp.top_logprobs:
        assert 1 <= len(top) <= 2 and all(v <= 0.0 for v in top.values())
    assert lp.text_offset == sorted(lp.text_offset)
    assert complete(client, max_tokens=2).choices[0].logprobs is None


def test_completion_text_agrees_with_its_logprobs(client):
    """The text is what the tokens spell, offsets point into it: a raw completion continues the
    prompt, so a first token that starts with a space keeps it (' sotto', not 'sotto')."""
    r = complete(client, temperature=0, logprobs=1)
    choice = r.choices[0]
    assert "".join(choice.logprobs.tokens) == choice.text
    for token, offset in zip(choice.logprobs.tokens, choice.logprobs.text_offset):
        assert choice.text[offset:offset + len(token)] == token


def test_completion_stream(client):
    expected = complete(client, temperature=0).choices[0].text
    chunks = list(complete(client, temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8


def test_completion_stop(client):
    full = complete(client, temperature=0, max_tokens=30).choices[0].text
    stop = ascii_stop(full)
    r = complete(client, temperature=0, max_tokens=30, stop=stop)
    assert r.choices[0].text == full[:full.find(stop)] and r.choices[0].finish_reason == "stop"


# ---- models -------------------------------------------------------------------------------------

def test_models_list_and_retrieve(client):
    models = list(client.models.list())
    assert [m.id for m in models] == [MODEL]
    assert models[0].object == "model" and models[0].owned_by
    m = client.models.retrieve(MODEL)
    assert m.id == MODEL and m.object == "model" and isinstance(m.created, int)
    assert "demo" in m.model_extra["display_name"].lower()
    with pytest.raises(NotFoundError):
        client.models.retrieve("no-such-model")
