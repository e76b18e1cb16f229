"""API keys, the usage report and the generation log, through the real CLI and a real server.

Keys are created with `mistral-serve keys create` (a subprocess, as a user would), stored as
salted hashes in DATA_DIR/mistral-serve.db, checked by a running server on every request, and
revoked while it runs. Every generation leaves a record that `mistral-serve usage` sums per key
and day, and that GET /api/ai/generations lists without content (unless --log-content) and
without the API key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from support.server_process import ServerProcess, free_port, fresh_data_dir

MODEL = "open-mistral-7b"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 6}
_ENV = {k: v for k, v in os.environ.items() if k != "MISTRAL_SERVE_API_KEY"}
# For servers (ServerProcess adds these to the environment): no static key unless a test sets
# one; one torch thread, so that other servers on a small shared machine do not stall this one.
SERVER_ENV = {"MISTRAL_SERVE_API_KEY": "", "OMP_NUM_THREADS": "1"}


def cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mistral_serve.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or _ENV)


def store_bytes(data_dir: Path) -> bytes:
    """The raw bytes of the SQLite store, its WAL and shared-memory files included."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("mistral-serve.db*")))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def key_dir(tmp_path_factory, demo_data_dir):
    """A data dir with three keys created through the CLI: {"alice": key, "bob": key, "carol": key}."""
    folder = fresh_data_dir(tmp_path_factory, demo_data_dir, "keys")
    names = ["alice", "bob", "carol"]
    # Sequential on purpose: each CLI run is short, and concurrent first writes to a brand-new
    # store are not what this module tests.
    results = {name: cli("keys", "create", "--name", name, "--data-dir", str(folder)) for name in names}
    for name, r in results.items():
        assert r.returncode == 0, r.stderr
    keys = {name: r.stdout.strip() for name, r in results.items()}
    return folder, keys, results


@pytest.fixture(scope="module")
def keyed_server(key_dir):
    folder, keys, _ = key_dir
    proc = ServerProcess(folder, "-v", env=SERVER_ENV).wait_ready()
    yield proc, keys
    proc.stop()


@pytest.fixture(scope="module")
def static_servers(tmp_path_factory, demo_data_dir):
    """Two servers with no stored keys: one with --api-key (and --log-content, -v), one with the key
    in MISTRAL_SERVE_API_KEY. Started together to save time."""
    a_dir = fresh_data_dir(tmp_path_factory, demo_data_dir, "static-flag")
    b_dir = fresh_data_dir(tmp_path_factory, demo_data_dir, "static-env")
    flag_key, env_key = "flag-key-" + "x" * 24, "env-key-" + "y" * 24
    a = ServerProcess(a_dir, "--api-key", flag_key, "--log-content", "-v", env=SERVER_ENV)
    b = ServerProcess(b_dir, "-v", env={**SERVER_ENV, "MISTRAL_SERVE_API_KEY": env_key})
    try:
        a.wait_ready()
        b.wait_ready()
        yield (a, flag_key), (b, env_key)
    finally:
        a.stop()
        b.stop()


# ---- the keys CLI and their storage -----------------------------------------------------------
def test_keys_create_prints_the_key_once_and_list_never_shows_it(key_dir):
    folder, keys, results = key_dir
    for name, r in results.items():
        lines = r.stdout.splitlines()
        assert len(lines) == 1, f"stdout of keys create should be the key alone: {r.stdout!r}"
        assert keys[name].startswith("ms-") and len(keys[name]) > 30
        assert keys[name] not in r.stderr and "only once" in r.stderr
    assert len(set(keys.values())) == 3

    listed = cli("keys", "list", "--data-dir", str(folder))
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("\t")[0]: line for line in listed.stdout.splitlines()}
    assert set(rows) == {"alice", "bob", "carol"}
    for name in rows:
        assert rows[name].endswith("active")
    for key in keys.values():
        assert key not in listed.stdout and key not in listed.stderr
        assert key.removeprefix("ms-") not in listed.stdout

    dup = cli("keys", "create", "--name", "alice", "--data-dir", str(folder))
    assert dup.returncode == 2 and dup.stdout == ""
    assert "exists already" in dup.stderr and len(dup.stderr.strip().splitlines()) == 1


def test_store_holds_only_salted_hashes(key_dir):
    folder, keys, _ = key_dir
    raw = store_bytes(folder)
    assert raw, "no store file in the data dir"
    for key in keys.values():
        secret = key.removeprefix("ms-")
        for form in (key, secret, secret[:16], secret[-16:]):
            assert form.encode() not in raw, "plaintext key material found in the store file"
        assert hashlib.sha256(key.encode()).digest() not in raw, "an unsalted hash of a key is stored"

    with sqlite3.connect(folder / "mistral-serve.db") as db:
        rows = {name: (salt, digest) for name, salt, digest in
                db.execute("SELECT name, salt, hash FROM api_keys")}
    assert set(rows) == set(keys)
    salts = [salt for salt, _ in rows.values()]
    assert all(isinstance(s, bytes) and len(s) >= 16 for s in salts)
    assert len(set(salts)) == len(salts), "salts must differ per key"
    for name, (salt, digest) in rows.items():
        assert digest == hashlib.sha256(salt + keys[name].encode()).digest()
        assert keys[name].encode() not in digest


# ---- the server checks the key --------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/ai/chat/completions"])
def test_server_requires_a_valid_key(keyed_server, path):
    server, keys = keyed_server
    with httpx.Client(base_url=server.url, timeout=60) as c:
        missing = c.post(path, json=CHAT)
        assert missing.status_code == 401, missing.text
        wrong = c.post(path, json=CHAT, headers=auth("ms-not-a-real-key"))
        assert wrong.status_code == 401, wrong.text
        # a stored key's hash or a near miss is not a key either
        near = c.post(path, json=CHAT, headers=auth(keys["alice"][:-1]))
        assert near.status_code == 401
        if path.startswith("/v1"):
            assert missing.json()["error"]["code"] == "invalid_api_key"
            assert wrong.json()["error"]["type"] == "invalid_request_error"
        else:
            assert missing.json()["error"]["type"] == "unauthenticated"
            assert missing.json()["status"] == "error"
        ok = c.post(path, json=CHAT, headers=auth(keys["alice"]))
        assert ok.status_code == 200, ok.text
        assert ok.json()["choices"][0]["message"]["role"] == "assistant"
        # the other read endpoints are protected the same way; /health and /metrics are not
        for read in ("/v1/models", "/api/ai/models", "/api/ai/generations"):
            assert c.get(read).status_code == 401
            assert c.get(read, headers=auth(keys["alice"])).status_code == 200
        assert c.get("/health").status_code == 200
        assert c.get("/metrics").status_code == 200


def test_openai_client_with_and_without_the_key(keyed_server):
    server, keys = keyed_server
    good = openai.OpenAI(base_url=server.url + "/v1", api_key=keys["alice"], max_retries=0)
    reply = good.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=4)
    assert reply.usage.completion_tokens == 4
    assert [m.id for m in good.models.list()] == [MODEL]
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="ms-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=4)


def test_revoked_key_fails_at_the_very_next_request(keyed_server, key_dir):
    server, keys = keyed_server
    folder = key_dir[0]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.post("/v1/chat/completions", json=CHAT, headers=auth(keys["carol"])).status_code == 200
        revoke = cli("keys", "revoke", "carol", "--data-dir", str(folder))
        assert revoke.returncode == 0, revoke.stderr
        after = c.post("/v1/chat/completions", json=CHAT, headers=auth(keys["carol"]))
        assert after.status_code == 401, after.text
        assert c.post("/api/ai/chat/completions", json=CHAT, headers=auth(keys["carol"])).status_code == 401
        # the other keys keep working
        assert c.post("/v1/chat/completions", json=CHAT, headers=auth(keys["alice"])).status_code == 200
    listed = cli("keys", "list", "--data-dir", str(folder)).stdout
    carol = next(line for line in listed.splitlines() if line.startswith("carol\t"))
    assert "revoked" in carol and "active" not in carol
    again = cli("keys", "revoke", "carol", "--data-dir", str(folder))
    assert again.returncode == 2 and "no active key named 'carol'" in again.stderr


# ---- usage ------------------------------------------------------------------------------------
def test_usage_sums_requests_and_tokens_per_key_and_day(keyed_server, key_dir):
    server, keys = keyed_server
    folder = key_dir[0]
    h = auth(keys["bob"])
    prompt_total = completion_total = 0
    with httpx.Client(base_url=server.url, timeout=60, headers=h) as c:
        bodies = [
            ("/v1/chat/completions", {**CHAT, "max_tokens": 3}),
            ("/api/ai/chat/completions", {**CHAT, "max_tokens": 5,
                                          "messages": [{"role": "user", "content": "A longer question " * 5}]}),
            ("/v1/completions", {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 7}),
        ]
        for path, body in bodies:
            r = c.post(path, json=body)
            assert r.status_code == 200, r.text
            prompt_total += r.json()["usage"]["prompt_tokens"]
            completion_total += r.json()["usage"]["completion_tokens"]
        # a streamed request counts too (usage from the final chunk)
        with c.stream("POST", "/v1/chat/completions",
                      json={**CHAT, "max_tokens": 4, "stream": True,
                            "stream_options": {"include_usage": True}}) as s:
            usage = [line for line in s.iter_lines() if '"usage": {' in line]
        final = json.loads(usage[-1].removeprefix("data: "))["usage"]
        prompt_total += final["prompt_tokens"]
        completion_total += final["completion_tokens"]
        # refused requests (bad key, invalid body) are not billed to bob
        assert c.post("/v1/chat/completions", json=CHAT, headers=auth("ms-nope")).status_code == 401
    n = 4
    assert completion_total == 3 + 5 + 7 + 4

    out = cli("usage", "--data-dir", str(folder))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["key", "day", "requests"]
    rows = [line.split() for line in lines[1:]]
    bob = [r for r in rows if r[0] == "bob"]
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()  # the store's days are UTC days
    assert bob == [["bob", today, str(n), str(prompt_total), str(completion_total)]], out.stdout
    for key in keys.values():
        assert key not in out.stdout


# ---- the generation log -----------------------------------------------------------------------
FIELDS = {"id", "model", "created", "api_key_name", "prompt_tokens", "completion_tokens",
          "time_to_first_token", "duration", "finish_reason"}


def test_generations_list_and_get_without_content(keyed_server):
    server, keys = keyed_server
    marker = "zebra-marker-71"
    sent = []
    with httpx.Client(base_url=server.url, timeout=60, headers=auth(keys["alice"])) as c:
        for max_tokens in (2, 3, 4):
            body = {**CHAT, "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": f"{marker} number {max_tokens}"}]}
            r = c.post("/api/ai/chat/completions", json=body)
            assert r.status_code == 200, r.text
            sent.append(r.json())  # the log keeps microseconds: newest-first is unambiguous
        listing = c.get("/api/ai/generations", params={"limit": 1000})
        assert listing.status_code == 200
        data = listing.json()["data"]
        ids = [g["id"] for g in data]
        expected = [r["id"].removeprefix("chatcmpl-") for r in reversed(sent)]
        assert ids[:3] == expected, "the newest generations should come first"
        created = [g["created"] for g in data]
        assert created == sorted(created, reverse=True)
        for g, r in zip(data[:3], reversed(sent)):
            assert FIELDS <= set(g), set(g)
            assert g["model"] == MODEL and g["api_key_name"] == "alice"
            assert g["prompt_tokens"] == r["usage"]["prompt_tokens"]
            assert g["completion_tokens"] == r["usage"]["completion_tokens"]
            assert g["finish_reason"] == "length"
            assert 0 < g["time_to_first_token"] <= g["duration"]
            assert abs(g["created"] - r["created"]) <= 1
            assert "messages" not in g and "completions" not in g
        assert c.get("/api/ai/generations", params={"limit": 2}).json()["data"] == data[:2]

        one = c.get(f"/api/ai/generations/{ids[0]}")
        assert one.status_code == 200 and one.json() == data[0]
        missing = c.get("/api/ai/generations/0123456789abcdef")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "resource_not_found"
        assert c.get(f"/api/ai/generations/{ids[0]}", headers=auth("ms-wrong")).status_code == 401

        text = listing.text + one.text
        assert marker not in text, "message content is stored without --log-content"
        for key in keys.values():
            assert key not in text


def test_generation_pages_lose_and_repeat_no_record_of_the_same_second(keyed_server):
    """Paging with the `after` cursor walks the whole log, even through records written in the
    same instant (which a time-based `before` would cut in two)."""
    from mistral_serve.server.store import Generation, Store

    server, keys = keyed_server
    store = Store(server.data_dir / "mistral-serve.db")
    tie = 1_000_000_000.0  # far in the past: these are the oldest records of the log
    for i in range(7):
        store.record(Generation(id=f"tie{i:02d}", created=tie, model=MODEL, endpoint="/v1/completions",
                                key_name=None, user=None, prompt_tokens=1, completion_tokens=1, cached_tokens=0,
                                ttft=None, duration=0.0, finish_reason="length", status=200))
    with httpx.Client(base_url=server.url, timeout=60, headers=auth(keys["alice"])) as c:
        everything = [g["id"] for g in c.get("/api/ai/generations", params={"limit": 1000}).json()["data"]]
        paged, after = [], None
        while True:
            page = c.get("/api/ai/generations", params={"limit": 3, **({"after": after} if after else {})}).json()
            paged += [g["id"] for g in page["data"]]
            assert page["last_id"] == (page["data"][-1]["id"] if page["data"] else None)
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert paged == everything and len(set(paged)) == len(paged)
        assert paged[-7:] == [f"tie{i:02d}" for i in reversed(range(7))]
        bad = c.get("/api/ai/generations", params={"after": "no-such-id"})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_params"


def test_api_keys_never_reach_the_server_log(keyed_server):
    server, keys = keyed_server
    with httpx.Client(base_url=server.url, timeout=60) as c:
        c.post("/v1/chat/completions", json=CHAT, headers=auth(keys["alice"]))
        c.post("/v1/chat/completions", json=CHAT, headers=auth(keys["alice"] + "x"))
    log = server.log()
    assert "POST /v1/chat/completions" in log  # -v: the access log is on, so there is something to read
    for key in keys.values():
        assert key not in log and key.removeprefix("ms-") not in log


# ---- static keys (--api-key, MISTRAL_SERVE_API_KEY) --------------------------------------------
def test_static_api_key_flag_and_env(static_servers):
    for server, key in static_servers:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            assert c.post("/v1/chat/completions", json=CHAT).status_code == 401
            assert c.post("/v1/chat/completions", json=CHAT, headers=auth(key + "z")).status_code == 401
            ok = c.post("/v1/chat/completions", json=CHAT, headers=auth(key))
            assert ok.status_code == 200, ok.text
            assert c.post("/api/ai/chat/completions", json=CHAT, headers=auth(key)).status_code == 200
            gens = c.get("/api/ai/generations", headers=auth(key)).json()["data"]
            assert gens and {g["api_key_name"] for g in gens} == {"static"}
            assert key not in c.get("/api/ai/generations", headers=auth(key)).text
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        assert client.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=2).choices
        assert key not in server.log()
        assert key.encode() not in store_bytes(server.data_dir)


def test_log_content_stores_messages_and_completions(static_servers):
    (server, key), _ = static_servers
    marker = "quokka-content-93"
    with httpx.Client(base_url=server.url, timeout=60, headers=auth(key)) as c:
        r = c.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": marker}]})
        assert r.status_code == 200, r.text
        gid = r.json()["id"].removeprefix("chatcmpl-")
        g = c.get(f"/api/ai/generations/{gid}").json()
        assert [(m["role"], m["content"]) for m in g["messages"]] == [("user", marker)]
        assert g["completions"] == [r.json()["choices"][0]["message"]["content"]]
        listed = c.get("/api/ai/generations").json()["data"]
        assert any(x["id"] == gid and x.get("messages") == g["messages"] for x in listed)
        assert key not in c.get("/api/ai/generations").text
    assert key not in server.log()


# ---- refusing to listen unauthenticated on a non-loopback address ------------------------------
def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_refuses_non_loopback_host_without_auth(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mistral_serve.cli", "serve", "--host", "0.0.0.0",
                             "--port", str(port), "--data-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_ENV)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("serve --host 0.0.0.0 without any key kept running instead of refusing")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not _listening(port)
    assert proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mistral-serve: error: ") and "0.0.0.0" in lines[0]
    assert "keys create" in lines[0] and "--api-key" in lines[0]
    assert "listening on" not in out + err
