"""Random mixed requests and the checks of their answers, shared by the load-like scenarios."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import httpx

from support.live import MODEL, read_sse

PATHS = ["/v1/chat/completions", "/api/ai/chat/completions", "/v1/completions"]


def mixed_request(rng: random.Random, i: int, stream: bool) -> tuple[str, dict]:
    """A request with parameters drawn at random: sampling settings, n, stops, logprobs, lengths."""
    path = PATHS[i % len(PATHS)]
    body: dict = {"model": MODEL, "max_tokens": rng.randint(4, 16), "stream": stream,
                  "temperature": rng.choice([0.0, 0.7, 1.5]), "n": rng.choice([1, 1, 2, 3]),
                  "top_p": rng.choice([1.0, 0.9, 0.5]), "seed": rng.choice([None, rng.randrange(2**31)]),
                  "presence_penalty": rng.choice([0.0, 0.5, -0.5]), "ignore_eos": rng.random() < 0.5}
    if rng.random() < 0.3:
        body["stop"] = [rng.choice(["the", "\n", "."])]
    if rng.random() < 0.3:
        body["top_k"] = rng.choice([1, 5, 40])
    if stream:
        body["stream_options"] = {"include_usage": True}
    text = f"Client {i} asks about {rng.choice(['the sea', 'bread', 'rain', 'trains'])}. " * rng.randint(1, 8)
    if path == "/v1/completions":
        body["prompt"] = text
        if rng.random() < 0.3:
            body["logprobs"] = 2
    else:
        body["messages"] = [{"role": "user", "content": text}]
        if rng.random() < 0.3:
            body["logprobs"], body["top_logprobs"] = True, 2
    return path, body


def problems_with(path: str, body: dict, status: int, answer: dict | str) -> list[str]:
    """What is wrong with an answer (empty when it is a correct, complete answer to `body`)."""
    if status != 200:
        return [f"status {status}: {str(answer)[:200]}"]
    n, cap = body["n"], body["max_tokens"]
    chat = "messages" in body
    if body["stream"]:
        sse = answer
        found = []
        if not sse["done"] or sse["after_done"]:
            found.append("the stream does not end with one data: [DONE]")
        if sse["errors"]:
            found.append(f"error events: {sse['errors']}")
        if sorted(c["index"] for e in sse["events"] for c in e.get("choices", []) if c.get("finish_reason")) \
                != list(range(n)):
            found.append(f"finish reasons {sse['finishes']} for n={n}")
        usage = sse["events"][-1].get("usage") if sse["events"] else None
        if not usage or not 1 <= usage["completion_tokens"] <= n * cap:
            found.append(f"usage {usage}")
        return found
    found = []
    if answer.get("object") != ("chat.completion" if chat else "text_completion"):
        found.append(f"object {answer.get('object')}")
    choices = answer.get("choices", [])
    if sorted(c["index"] for c in choices) != list(range(n)):
        found.append(f"{len(choices)} choices for n={n}")
    for c in choices:
        text = c["message"]["content"] if chat else c["text"]
        if not isinstance(text, str) or c["finish_reason"] not in ("stop", "length"):
            found.append(f"choice {c}")
        if chat and c["message"]["role"] != "assistant":
            found.append(f"role {c['message']['role']}")
    usage = answer.get("usage", {})
    if not 1 <= usage.get("completion_tokens", 0) <= n * cap:
        found.append(f"usage {usage}")
    if body["ignore_eos"] and "stop" not in body and usage.get("completion_tokens") != n * cap:
        found.append(f"ignore_eos without stops gave {usage.get('completion_tokens')} tokens, not {n * cap}")
    return found


@dataclass
class Answer:
    status: int  # 0: no answer (the request hung past its timeout or the connection broke)
    headers: httpx.Headers
    body: dict | str  # the SSE summary (read_sse) of a 200 stream, the JSON of a 200, else the text
    latency: float
    problems: list[str]  # what is wrong with a 200 answer (empty: a correct, complete answer)


async def send(client: httpx.AsyncClient, path: str, body: dict) -> Answer:
    """Send one request, read its whole answer and check it."""
    started = time.monotonic()
    try:
        if body["stream"]:
            async with client.stream("POST", path, json=body) as r:
                lines = [line async for line in r.aiter_lines()]
                answer = read_sse(lines) if r.status_code == 200 else "\n".join(lines)
        else:
            r = await client.post(path, json=body)
            answer = r.json() if r.status_code == 200 else r.text
    except httpx.HTTPError as err:
        return Answer(0, httpx.Headers(), repr(err), time.monotonic() - started, [f"no answer: {err!r}"])
    return Answer(r.status_code, r.headers, answer, time.monotonic() - started,
                  problems_with(path, body, r.status_code, answer))


async def send_all(url: str, requests: list[tuple[str, dict]], timeout: float = 300) -> list[Answer]:
    """Send every request at once, each on its own connection."""
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        return await asyncio.gather(*(send(client, path, body) for path, body in requests))
