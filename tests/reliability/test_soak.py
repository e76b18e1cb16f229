"""Soak: many requests in a row. Resident memory after the first 100 and after the last differ by
less than 5%, and open file descriptors and threads do not grow."""

from __future__ import annotations

import random

import httpx

from support.figures import FULL, report, size
from support.live import MODEL

REQUESTS = size(300, 1000)
WARM_UP = 100  # the baseline is taken after these: allocators, caches and pools have settled
SYSTEM = "You are a terse assistant. Answer in a few words. " * 4  # a prefix every request shares


def soak_request(rng: random.Random, i: int) -> tuple[str, dict]:
    """Alternately chat (with the shared system prompt) and completions, streamed or not, each with
    text of its own: every request adds new blocks to the prefix cache."""
    own = f"Request {i}: {rng.random()} {' '.join(rng.choice(['sky', 'stone', 'leaf', 'salt']) for _ in range(8))}"
    base = {"model": MODEL, "max_tokens": rng.randint(2, 8), "stream": rng.random() < 0.5,
            "temperature": rng.choice([0.0, 1.0])}
    if i % 2:
        return "/v1/completions", {**base, "prompt": own}
    return "/v1/chat/completions", {**base, "messages": [{"role": "system", "content": SYSTEM},
                                                         {"role": "user", "content": own}]}


def test_a_long_run_of_requests_leaks_no_memory_descriptors_or_threads(live):
    rng = random.Random(1000)
    samples: dict[int, dict[str, int]] = {}
    failures = []
    with httpx.Client(base_url=live.url, timeout=120) as client:
        for i in range(1, REQUESTS + 1):
            path, body = soak_request(rng, i)
            if body["stream"]:
                with client.stream("POST", path, json=body) as r:
                    text = r.read().decode()
                ok = r.status_code == 200 and text.rstrip().endswith("data: [DONE]") and '"error"' not in text
            else:
                r = client.post(path, json=body)
                ok = r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
            if not ok:
                failures.append((i, r.status_code))
            if i == WARM_UP or i == REQUESTS or i % 250 == 0:
                samples[i] = live.resources()  # the client's one connection is open every time
    first, last = samples[WARM_UP], samples[REQUESTS]
    growth = (last["rss"] - first["rss"]) / first["rss"]
    trend = ", ".join(f"{i}: {s['rss'] / 2**20:.0f}" for i, s in sorted(samples.items()))
    report("soak", f"{REQUESTS} requests in a row, {len(failures)} failed; resident memory after {WARM_UP} "
                   f"{first['rss'] / 2**20:.0f} MiB, after {REQUESTS} {last['rss'] / 2**20:.0f} MiB ({growth:+.1%}; "
                   f"MiB after n: {trend}); open fds {first['fds']} -> {last['fds']}, threads {first['threads']} -> "
                   f"{last['threads']}" + ("" if FULL else " (make soak: 1000 requests)"))
    assert not failures, failures[:10]
    assert abs(growth) < 0.05
    assert last["fds"] <= first["fds"] and last["threads"] <= first["threads"], (first, last)
