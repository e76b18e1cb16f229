"""Client-side helpers for tests against a live server: request bodies, /metrics, SSE streams."""

from __future__ import annotations

import json
import threading
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

MODEL = "open-mistral-7b"
RUNNING = "mistral_serve_running_requests"
WAITING = "mistral_serve_queue_depth"
IN_FLIGHT = "mistral_serve_requests_in_flight"
USED = "mistral_serve_kv_cache_blocks_used"


def chat(content: str, **extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def metrics(url: str) -> dict[str, float]:
    """The unlabelled samples of /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def wait_until(predicate, timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until predicate() held, or None if it did not within timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None


def read_sse(lines) -> dict:
    """Consume an SSE stream: the JSON events, whether it ended with [DONE], the finish reasons."""
    events, done, after_done = [], False, []
    for line in lines:
        if not line.startswith("data: "):
            continue
        if done:
            after_done.append(line)
        payload = line[6:]
        if payload == "[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    finishes = [c["finish_reason"] for e in events for c in e.get("choices", []) if c.get("finish_reason")]
    errors = [e["error"] for e in events if "error" in e]
    # chat chunks carry delta.content; completion chunks carry text
    text = "".join(c.get("delta", {}).get("content") or c.get("text") or ""
                   for e in events for c in e.get("choices", []))
    return {"events": events, "done": done, "after_done": after_done, "finishes": finishes, "errors": errors,
            "text": text}


class Streams:
    """n streaming chat requests on threads, each recording its SSE outcome or the exception that
    broke it off."""

    def __init__(self, url: str, n: int, max_tokens: int) -> None:
        self.results: list[dict | BaseException | None] = [None] * n
        self.started = [threading.Event() for _ in range(n)]
        self.threads = [threading.Thread(target=self._run, args=(url, i, max_tokens), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, url: str, i: int, max_tokens: int) -> None:
        body = chat(f"long stream {i}", max_tokens=max_tokens, ignore_eos=True, stream=True)
        lines = []
        try:
            with httpx.Client(timeout=60) as c, c.stream("POST", url + "/v1/chat/completions", json=body) as s:
                for line in s.iter_lines():
                    lines.append(line)
                    if line.startswith("data: {"):
                        self.started[i].set()
            self.results[i] = read_sse(lines)
        except BaseException as err:  # noqa: BLE001 - recorded and asserted on by the test
            self.results[i] = err
        finally:
            self.started[i].set()

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout)
