"""Helpers of the tests that drive a live server with the official `openai` package
(tests/e2e/test_openai_*.py): chat calls with defaults, greedy answers, token ids, logprob tokens.

The demo model has random weights, so its text means nothing, but it is a real model: greedy
decoding is deterministic, a seed repeats a sample, and every sampling control changes the
tokens in a way a test can see.
Each of those files would fail if the server ignored the parameter it is about.
"""

from __future__ import annotations

import httpx
from openai import OpenAI

MODEL = "open-mistral-7b"
MESSAGES = [{"role": "user", "content": "Tell me a story about a cat."}]
EOS_ID = 2


def chat(client: OpenAI, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", MESSAGES)
    kw.setdefault("max_tokens", 12)
    return client.chat.completions.create(**kw)


def greedy(client: OpenAI, **kw) -> str:
    return chat(client, temperature=0, **kw).choices[0].message.content


def token_id(server, text: str) -> int:
    """The id of a word that the tokenizer writes as one token."""
    ids = httpx.post(server.url + "/tokenize", json={"prompt": text, "add_special_tokens": False}).json()["tokens"]
    assert len(ids) == 1, (text, ids)
    return ids[0]


def prompt_ids(server, messages) -> list[int]:
    return httpx.post(server.url + "/tokenize", json={"messages": messages}).json()["tokens"]


def tokens_of(response, i: int = 0) -> list[str]:
    return [e.token for e in response.choices[i].logprobs.content]


def ascii_stop(text: str, length: int = 3) -> str:
    """A substring of `text` from around its middle, made of plain ASCII letters and spaces."""
    start = len(text) // 3
    for i in range(start, len(text) - length):
        piece = text[i:i + length]
        plain = all(ch.isascii() and (ch.isalnum() or ch == " ") for ch in piece) and piece.strip()
        if plain and text.find(piece) > 0:
            return piece
    raise AssertionError(f"no ASCII substring in {text!r}")
