"""What operators see: /metrics (Prometheus), /health, /openapi.json. (A model that fails to load:
tests/reliability/test_bad_checkpoints.py.)"""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.server_process import ServerProcess

MODEL = "open-mistral-7b"
# One torch thread per server: on a small machine shared with other servers, spinning OpenMP
# threads can slow each engine step a hundredfold.
ENV = {"OMP_NUM_THREADS": "1"}


def chat(content: str = "Hello there.", **extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 8, **extra}


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics, parsed as Prometheus text (a malformed exposition raises)."""
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


@pytest.fixture(scope="module")
def obs(demo_data_dir):
    """A server with at most 2 sequences decoded together (so a queue can form), watched from the
    moment it starts: the /health answers seen while the model loads are kept in `.loading`."""
    proc = ServerProcess(demo_data_dir, "--max-num-seqs", "2", env=ENV)
    proc.loading = []  # (status, body) of /health answers before the model was ready
    proc.early_chat = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            assert proc.proc.poll() is None, proc.log()
            try:
                r = httpx.get(proc.url + "/health", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.02)
                continue
            if r.status_code == 200:
                break
            proc.loading.append((r.status_code, r.json(), r.headers))
            if proc.early_chat is None:
                c = httpx.post(proc.url + "/v1/chat/completions", json=chat(), timeout=30)
                proc.early_chat = (c.status_code, c.json(), c.headers)
            time.sleep(0.02)
        else:
            pytest.fail("server not ready:\n" + proc.log())
        yield proc
    finally:
        proc.stop()


# ---- /health, /openapi.json ----------------------------------------------------------------------
def test_health_is_503_while_loading_then_200_with_the_model_id(obs):
    r = httpx.get(obs.url + "/health", timeout=5)
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": MODEL}
    # Loading takes about a second here, so the 503 is normally seen; a fast machine may miss it.
    for status, body, _ in obs.loading:
        assert status == 503
        assert body == {"status": "loading", "detail": None}
    if obs.early_chat is not None:
        status, body, headers = obs.early_chat
        if status != 200:  # the model may have finished loading in between
            assert status == 503, body
            assert body["error"]["code"] == "model_loading"
            assert headers.get("retry-after")


def test_openapi_lists_every_endpoint(obs):
    r = httpx.get(obs.url + "/openapi.json", timeout=10)
    assert r.status_code == 200
    spec = json.loads(r.text)
    assert spec["openapi"].startswith("3.")
    paths = set(spec["paths"])
    for path in ("/v1/chat/completions", "/api/ai/chat/completions", "/v1/completions", "/v1/models",
                 "/api/ai/models/{model_id}", "/api/ai/generations", "/tokenize", "/detokenize",
                 "/health", "/metrics", "/v1/responses", "/v1/responses/{response_id}", "/v1/messages",
                 "/api/chat", "/api/generate", "/api/tags", "/api/show"):
        assert path in paths, f"{path} missing from /openapi.json: {sorted(paths)}"
    assert "post" in spec["paths"]["/v1/chat/completions"]
    assert "get" in spec["paths"]["/api/ai/generations"]


# ---- /metrics ------------------------------------------------------------------------------------
def test_requests_counted_by_route_and_status(obs):
    before = scrape(obs.url)
    with httpx.Client(base_url=obs.url, timeout=60) as c:
        assert c.post("/v1/chat/completions", json=chat()).status_code == 200
        assert c.post("/v1/chat/completions", json=chat()).status_code == 200
        assert c.post("/api/ai/chat/completions", json=chat()).status_code == 200
        assert c.post("/v1/chat/completions", json={**chat(), "model": "no-such-model"}).status_code == 404
        assert c.post("/v1/chat/completions", json={**chat(), "max_tokens": 0}).status_code == 400
        assert c.get(f"/api/ai/models/{MODEL}").status_code == 200
        assert c.get("/api/ai/models/nope").status_code == 404
        assert c.get("/no/such/path").status_code == 404
    name = "mistral_serve_requests_total"
    expected = {
        ("/v1/chat/completions", "200"): 2, ("/api/ai/chat/completions", "200"): 1,
        ("/v1/chat/completions", "404"): 1, ("/v1/chat/completions", "400"): 1,
        ("/api/ai/models/{model_id:path}", "200"): 1, ("/api/ai/models/{model_id:path}", "404"): 1,
    }

    def deltas(after):
        return {k: value(after, name, route=k[0], status=k[1]) - value(before, name, route=k[0], status=k[1])
                for k in expected}

    # the middleware counts a request once its response is sent: allow it a moment
    after = wait_for(lambda: (lambda m: m if deltas(m) == expected else None)(scrape(obs.url)), 3) \
        or scrape(obs.url)
    assert deltas(after) == expected
    unmatched = [v for (n, labels), v in after.items()
                 if n == name and dict(labels).get("route") == "unmatched" and dict(labels).get("status") == "404"]
    assert unmatched and unmatched[0] >= 1
    routes = {dict(labels)["route"] for (n, labels) in after if n == name}
    assert "/no/such/path" not in routes, "raw paths must not become labels (unbounded cardinality)"


def test_token_counters_and_latency_histograms_follow_usage(obs):
    before = scrape(obs.url)
    with httpx.Client(base_url=obs.url, timeout=60) as c:
        a = c.post("/v1/chat/completions", json=chat("Count the tokens.", max_tokens=12, ignore_eos=True)).json()
        b = c.post("/v1/completions", json={"model": MODEL, "prompt": "One two three", "max_tokens": 9,
                                            "ignore_eos": True}).json()
        streamed = []
        with c.stream("POST", "/api/ai/chat/completions",
                      json=chat("Stream it.", max_tokens=7, ignore_eos=True, stream=True,
                                stream_options={"include_usage": True})) as s:
            for line in s.iter_lines():
                if line.startswith("data: {"):
                    streamed.append(json.loads(line[6:]))
        c_usage = [x["usage"] for x in streamed if x.get("usage")][-1]
    after = scrape(obs.url)
    usages = [a["usage"], b["usage"], c_usage]
    prompt = sum(u["prompt_tokens"] for u in usages)
    completion = sum(u["completion_tokens"] for u in usages)
    assert completion == 12 + 9 + 7

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mistral_serve_prompt_tokens_total") == prompt
    assert delta("mistral_serve_generation_tokens_total") == completion
    assert delta("mistral_serve_time_to_first_token_seconds_count") == 3
    assert delta("mistral_serve_time_to_first_token_seconds_sum") > 0
    assert delta("mistral_serve_time_to_first_token_seconds_bucket", le="+Inf") == 3
    # one inter-token gap per token after the first (a delta may carry several tokens)
    itl = delta("mistral_serve_inter_token_latency_seconds_count")
    assert 3 <= itl <= completion - 3
    assert delta("mistral_serve_inter_token_latency_seconds_sum") > 0
    assert delta("mistral_serve_request_duration_seconds_count") == 3
    # histogram buckets are cumulative
    buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in after.items()
                     if n == "mistral_serve_time_to_first_token_seconds_bucket")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)


def test_engine_gauges_queue_running_and_kv_cache(obs):
    idle = scrape(obs.url)
    total = value(idle, "mistral_serve_kv_cache_blocks_total")
    assert total > 0
    assert value(idle, "mistral_serve_running_requests") == 0
    assert value(idle, "mistral_serve_queue_depth") == 0
    idle_used = value(idle, "mistral_serve_kv_cache_blocks_used")
    assert value(idle, "mistral_serve_kv_cache_usage_ratio") == pytest.approx(idle_used / total)

    # 4 long streams on a server decoding at most 2 sequences: 2 run, 2 wait in the engine's queue
    stop = threading.Event()
    started = [threading.Event() for _ in range(4)]

    def stream(i: int) -> None:
        body = chat(f"stream {i} {uuid.uuid4().hex}", max_tokens=5000, ignore_eos=True, stream=True)
        with httpx.Client(timeout=60) as c, c.stream("POST", obs.url + "/v1/chat/completions", json=body) as s:
            for _ in s.iter_lines():
                started[i].set()
                if stop.is_set():
                    return

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    try:
        def busy():
            m = scrape(obs.url)
            return m if (value(m, "mistral_serve_running_requests") == 2
                         and value(m, "mistral_serve_queue_depth") == 2) else None

        m = wait_for(busy, timeout=20, interval=0.1)
        assert m, "expected 2 running and 2 queued requests"
        used = value(m, "mistral_serve_kv_cache_blocks_used")
        assert used > idle_used
        assert value(m, "mistral_serve_kv_cache_blocks_total") == total
        assert value(m, "mistral_serve_kv_cache_usage_ratio") == pytest.approx(used / total, rel=0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)

    def drained():
        m = scrape(obs.url)
        return m if (value(m, "mistral_serve_running_requests") == 0
                     and value(m, "mistral_serve_queue_depth") == 0) else None

    m = wait_for(drained, timeout=10, interval=0.1)
    assert m, "requests still running after their clients left"
    assert value(m, "mistral_serve_kv_cache_blocks_used") == idle_used


def test_prefix_cache_hit_rate_rises_when_a_long_prefix_is_shared(obs):
    salt = uuid.uuid4().hex[:8]
    system = " ".join(f"rule-{salt}-{i} applies." for i in range(80))
    with httpx.Client(base_url=obs.url, timeout=60) as c:
        n = c.post("/tokenize", json={"model": MODEL, "messages": [{"role": "system", "content": system},
                                                                  {"role": "user", "content": "x"}]}).json()
        assert n["count"] >= 300
        rate0 = value(scrape(obs.url), "mistral_serve_prefix_cache_hit_rate")
        first = c.post("/v1/chat/completions", json={
            "model": MODEL, "max_tokens": 2,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": "First question?"}]})
        rate1 = value(scrape(obs.url), "mistral_serve_prefix_cache_hit_rate")
        second = c.post("/v1/chat/completions", json={
            "model": MODEL, "max_tokens": 2,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": "Another one?"}]})
        rate2 = value(scrape(obs.url), "mistral_serve_prefix_cache_hit_rate")
    assert first.status_code == second.status_code == 200
    assert first.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 256, cached  # most of the shared system prompt, in whole blocks
    assert 0 <= rate0 <= 1 and 0 <= rate1 <= 1 and 0 < rate2 <= 1
    assert rate1 <= rate0 or rate0 == 0  # the first request is a miss
    assert rate2 > rate1
