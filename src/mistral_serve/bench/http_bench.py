"""Concurrent streaming clients against a live `mistral-serve serve`: throughput, TTFT, ITL."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx


@dataclass(frozen=True, slots=True)
class HttpResult:
    """One run of `clients` concurrent streams. Seconds; TTFT over the requests, inter-token
    latency (ITL) over every gap between two content chunks of any stream."""

    clients: int
    tokens_per_s: float
    ttft_p50: float
    ttft_p99: float
    itl_p50: float
    itl_p99: float
    errors: int

    @property
    def itl_spread(self) -> float:
        """ITL p99 / p50: how much longer the worst gaps are than a usual one (a prompt chunk
        read next to the decodes stretches every stream's gap; the engine's step-time target,
        --target-step-ms, bounds it)."""
        return self.itl_p99 / self.itl_p50 if self.itl_p50 > 0 else float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class LocalServer:
    """A server process on a free loopback port: ours (`mistral_serve`) or a peer's.
    `command(port)` gives its command line; `ready_path` answers 200 once it serves."""

    def __init__(self, command: Callable[[int], list[str]], ready_path: str = "/health") -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        self.proc = subprocess.Popen(command(self.port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ))

    @classmethod
    def mistral_serve(cls, model_args: list[str], data_dir: Path) -> "LocalServer":
        return cls(lambda port: [sys.executable, "-m", "mistral_serve.cli", "serve", "--port", str(port),
                                 "--data-dir", str(data_dir), "--max-queue", "1024", *model_args])

    @classmethod
    def llama_cpp(cls, gguf: Path, threads: int, n_ctx: int = 4096) -> "LocalServer":
        """llama-cpp-python's OpenAI-compatible server (it decodes one request at a time)."""
        # By default it aborts a running request when a new one arrives; queue them instead.
        return cls(lambda port: [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--n_threads",
                                 str(threads), "--n_ctx", str(n_ctx), "--port", str(port),
                                 "--interrupt_requests", "False"], ready_path="/v1/models")

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.proc.returncode}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError("the server did not become ready")

    def kv_blocks_total(self) -> int:
        """The server's KV cache size in blocks, read from its /metrics."""
        import httpx

        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith("mistral_serve_kv_cache_blocks_total"):
                return int(float(line.split()[-1]))
        return 0

    def peak_rss(self) -> int:
        """Bytes: the server process's high-water mark of resident memory (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def model_id(self) -> str:
        return httpx.get(self.url + "/v1/models", timeout=10).json()["data"][0]["id"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _one(client: httpx.AsyncClient, url: str, body: dict) -> tuple[float | None, list[float], int]:
    """One streamed request: (TTFT, gaps between content chunks, content chunks); -1 chunks
    when it failed (an error status or a stream cut short)."""
    try:
        return await _stream_one(client, url, body)
    except httpx.HTTPError:
        return None, [], -1


async def _stream_one(client: httpx.AsyncClient, url: str, body: dict) -> tuple[float | None, list[float], int]:
    started = time.perf_counter()
    ttft, last, gaps, chunks = None, None, [], 0
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return None, [], -1
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if not data.get("choices") or not data["choices"][0]["delta"].get("content"):
                continue
            now = time.perf_counter()
            if ttft is None:
                ttft = now - started
            elif last is not None:
                gaps.append(now - last)
            last = now
            chunks += 1
    return ttft, gaps, chunks


async def run_clients(base_url: str, model: str, clients: int, prompt_words: int, output_len: int,
                      seed: int = 0) -> HttpResult:
    rng = random.Random(seed)
    words = ["alpha", "river", "stone", "cloud", "market", "violet", "engine", "garden", "signal", "orbit"]
    url = base_url + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(3600), limits=limits) as client:
        bodies = [{"model": model, "stream": True, "max_tokens": output_len, "ignore_eos": True, "temperature": 0,
                   "messages": [{"role": "user", "content": " ".join(rng.choice(words) for _ in range(prompt_words))}]}
                  for _ in range(clients)]
        started = time.perf_counter()
        results = await asyncio.gather(*(_one(client, url, b) for b in bodies))
        seconds = time.perf_counter() - started
    ok = [r for r in results if r[2] >= 0]
    ttfts = [r[0] for r in ok if r[0] is not None]
    gaps = [g for r in ok for g in r[1]]
    tokens = sum(r[2] for r in ok)
    return HttpResult(clients, tokens / seconds, percentile(ttfts, 0.5), percentile(ttfts, 0.99),
                      percentile(gaps, 0.5), percentile(gaps, 0.99), len(results) - len(ok))
