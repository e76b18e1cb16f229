"""Request and server life cycles: clients that leave, many clients at once, a full queue, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

import httpx
import pytest

from support.live import RUNNING, USED, Streams, chat, metrics, read_sse, wait_until
from support.server_process import ServerProcess, fresh_data_dir

# One torch thread per server: on a small machine shared with other servers, spinning OpenMP
# threads can slow each engine step a hundredfold.
ENV = {"OMP_NUM_THREADS": "1"}


def generation(url: str, gid: str) -> dict:
    r = httpx.get(f"{url}/api/ai/generations/{gid}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def life(tmp_path_factory, demo_data_dir):
    # float32: greedy decoding is then the same whatever the batch a request lands in (in bfloat16,
    # batch-dependent rounding can flip near-tied logits of the random demo weights).
    proc = ServerProcess(fresh_data_dir(tmp_path_factory, demo_data_dir, "life"), "--dtype", "float32",
                         env=ENV).wait_ready()
    yield proc
    proc.stop()


# ---- clients that leave -------------------------------------------------------------------------
def test_stream_disconnect_aborts_the_request(life):
    idle = metrics(life.url)
    assert idle[RUNNING] == 0
    body = chat(f"Tell a very long story {uuid.uuid4().hex}", max_tokens=5000, ignore_eos=True, stream=True)
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", life.url + "/v1/chat/completions", json=body) as s:
            assert s.status_code == 200
            seen = 0
            gid = None
            lines = s.iter_lines()
            for line in lines:
                if line.startswith("data: {"):
                    gid = gid or json.loads(line[6:])["id"].removeprefix("chatcmpl-")
                    seen += 1
                    if seen >= 5:
                        break
            # (still connected: the line iterator is left open until the checks are done)
            busy = metrics(life.url)
            assert busy[RUNNING] == 1
            assert busy[USED] > idle[USED]
            lines.close()
        # closing the response before it is complete closes the connection: the client is gone
    left = time.monotonic()
    waited = wait_until(lambda: (lambda m: m[RUNNING] == 0 and m[USED] == idle[USED])(metrics(life.url)), 3)
    assert waited is not None, f"still generating 3 s after the client left: {metrics(life.url)}"
    record = generation(life.url, gid)
    assert record["status"] == 499
    assert record["completion_tokens"] < 5000
    assert record["finish_reason"] is None
    assert time.monotonic() - left < 5


def test_non_streaming_disconnect_aborts_the_request(life):
    idle = metrics(life.url)
    tag = uuid.uuid4().hex
    body = chat(f"Another long story {tag}", max_tokens=5000, ignore_eos=True)
    started = time.monotonic()
    with httpx.Client(timeout=httpx.Timeout(30, read=1.5)) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.post(life.url + "/v1/chat/completions", json=body)
    left = time.monotonic()
    waited = wait_until(lambda: (lambda m: m[RUNNING] == 0 and m[USED] == idle[USED])(metrics(life.url)), 3)
    assert waited is not None, f"still generating 3 s after the client left: {metrics(life.url)}"
    # the aborted request was logged as such, far short of its 5000 tokens
    recent = httpx.get(life.url + "/api/ai/generations", params={"limit": 5}, timeout=10).json()["data"]
    mine = [g for g in recent if g["created"] >= int(started) - 1 and g["status"] == 499]
    assert mine, recent
    assert mine[0]["completion_tokens"] < 5000 and mine[0]["finish_reason"] is None
    assert mine[0]["duration"] < (time.monotonic() - started) + 1
    assert time.monotonic() - left < 5


# ---- many clients at once -----------------------------------------------------------------------
def test_fifty_concurrent_streams_complete_identically(life):
    prompt = f"Write one sentence about the sea {uuid.uuid4().hex[:6]}."

    async def one(client: httpx.AsyncClient) -> dict:
        body = chat(prompt, max_tokens=16, temperature=0, stream=True)
        async with client.stream("POST", "/v1/chat/completions", json=body) as s:
            assert s.status_code == 200, await s.aread()
            return read_sse([line async for line in s.aiter_lines()])

    async def main() -> list[dict]:
        limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
        async with httpx.AsyncClient(base_url=life.url, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(50)))

    results = asyncio.run(main())
    assert len(results) == 50
    for r in results:
        assert r["done"] and not r["after_done"], "every stream ends with data: [DONE]"
        assert not r["errors"], r["errors"]
        assert len(r["finishes"]) == 1 and r["finishes"][0] in ("length", "stop")
        assert r["events"][0]["choices"][0]["delta"]["role"] == "assistant"
    texts = {r["text"] for r in results}
    assert len(texts) == 1, f"greedy decoding of one prompt gave {len(texts)} different texts"
    assert next(iter(texts))
    assert {r["finishes"][0] for r in results} == {results[0]["finishes"][0]}
    assert wait_until(lambda: metrics(life.url)[RUNNING] == 0, 5) is not None


# ---- a full queue ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory, demo_data_dir):
    proc = ServerProcess(fresh_data_dir(tmp_path_factory, demo_data_dir, "small"),
                         "--max-queue", "0", "--max-num-seqs", "2", env=ENV).wait_ready()
    yield proc
    proc.stop()


def _burst(url: str, n: int, stream: bool) -> list[httpx.Response | dict]:
    async def one(client: httpx.AsyncClient, i: int):
        body = chat(f"burst {i}", max_tokens=32, ignore_eos=True, stream=stream)
        if not stream:
            return await client.post("/v1/chat/completions", json=body)
        async with client.stream("POST", "/v1/chat/completions", json=body) as s:
            lines = [line async for line in s.aiter_lines()]
            return {"status": s.status_code, "headers": s.headers, "sse": read_sse(lines) if s.status_code == 200
                    else None, "body": "\n".join(lines)}

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=n)) as client:
            return await asyncio.gather(*(one(client, i) for i in range(n)))

    return asyncio.run(main())


def test_full_queue_answers_429_with_retry_after(small):
    responses = _burst(small.url, 12, stream=False)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    refused = [r for r in responses if r.status_code == 429]
    assert refused, f"12 requests on 2 slots and no queue, yet none refused: {statuses}"
    assert statuses.count(200) >= 2
    for r in refused:
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error"
    for r in responses:
        if r.status_code == 200:
            assert r.json()["usage"]["completion_tokens"] == 32
    after = httpx.post(small.url + "/v1/chat/completions", json=chat("after the burst", max_tokens=4), timeout=60)
    assert after.status_code == 200, after.text


def test_full_queue_refuses_streams_with_429_before_streaming(small):
    """A streaming request over the limit must get a 429 status (with Retry-After), like a
    non-streaming one: clients decide whether to retry from the status, before any event."""
    responses = _burst(small.url, 12, stream=True)
    statuses = [r["status"] for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    for r in responses:
        if r["status"] == 200:
            assert r["sse"]["done"] and not r["sse"]["errors"], r["sse"]["errors"]
            assert r["sse"]["finishes"] == ["length"]
        else:
            assert int(r["headers"]["retry-after"]) >= 1
    assert 429 in statuses, f"no stream refused with 429: {[r['sse'] and r['sse']['errors'] for r in responses]}"
    assert httpx.post(small.url + "/v1/chat/completions", json=chat("after", max_tokens=4),
                      timeout=60).status_code == 200


# ---- SIGTERM --------------------------------------------------------------------------------------
def sigterm_and_watch(server: ServerProcess, limit: float) -> tuple[float, list]:
    """Send SIGTERM; poll /health until the process exits. Returns (seconds to exit, health answers)."""
    health = []
    sent = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    while server.proc.poll() is None and time.monotonic() - sent < limit:
        try:
            r = httpx.get(server.url + "/health", timeout=1)
            health.append((r.status_code, r.json()))
        except httpx.HTTPError:
            pass  # the listening socket closes at once; a 503 is seen only if a request slips in
        time.sleep(0.05)
    return time.monotonic() - sent, health


def test_sigterm_ends_running_streams_cleanly_within_the_timeout(tmp_path_factory, demo_data_dir):
    """5 streams far too long to finish in --shutdown-timeout 5: each must still end as a valid
    SSE stream (an error event or a finish, then [DONE]), not as a cut connection."""
    data = fresh_data_dir(tmp_path_factory, demo_data_dir, "sigterm")
    server = ServerProcess(data, "--shutdown-timeout", "5", "-v", env=ENV).wait_ready()
    try:
        streams = Streams(server.url, 5, max_tokens=3000)
        for e in streams.started:
            assert e.wait(30), "streams did not start"
        assert wait_until(lambda: metrics(server.url)[RUNNING] == 5, 30) is not None, metrics(server.url)
        exited_after, health = sigterm_and_watch(server, 15)
        streams.join(15)
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert exited_after < 5 + 5, f"exit took {exited_after:.1f}s with --shutdown-timeout 5"
    for status, body in health:
        assert status == 503 and body["status"] == "draining", health

    restarted = time.monotonic()
    again = ServerProcess(data, env=ENV).wait_ready(timeout=60)
    try:
        assert time.monotonic() - restarted < 30
        r = httpx.post(again.url + "/v1/chat/completions", json=chat("hello again", max_tokens=3), timeout=60)
        assert r.status_code == 200, r.text
    finally:
        again.stop()

    for i, r in enumerate(streams.results):
        assert not isinstance(r, BaseException), f"stream {i} broke off uncleanly: {r!r}\n{log}"
        assert r is not None and r["done"], f"stream {i} has no [DONE]"
        assert r["finishes"] or r["errors"], f"stream {i} ended with neither a finish_reason nor an error"


def test_sigterm_lets_a_short_stream_finish_and_exits_0(tmp_path_factory, demo_data_dir):
    data = fresh_data_dir(tmp_path_factory, demo_data_dir, "sigterm-short")
    server = ServerProcess(data, "--shutdown-timeout", "30", env=ENV).wait_ready()
    try:
        streams = Streams(server.url, 1, max_tokens=60)
        assert streams.started[0].wait(30)
        assert wait_until(lambda: metrics(server.url)[RUNNING] == 1, 30) is not None
        exited_after, _ = sigterm_and_watch(server, 40)
        streams.join(10)
    finally:
        code = server.stop()
    log = server.log_path.read_text()
    r = streams.results[0]
    assert not isinstance(r, BaseException), f"the running stream broke off: {r!r}\n{log}"
    assert r["done"] and r["finishes"] == ["length"] and not r["errors"], r
    assert exited_after < 30
    assert code == 0, f"exit code {code} after SIGTERM (expected 0):\n{log}"
