"""A browser cannot be turned against the server: CORS preflights are answered for the allowed
origins only, requests from other origins are refused before they do anything, and a loopback
server refuses Host names that are not its own (DNS rebinding, as Ollama's CVE-2024-28224).

The workbench itself, on localhost and 127.0.0.1, is checked in a real Chromium in
tests/ui/test_workbench_hosts.py.
"""

from __future__ import annotations

import httpx
import pytest

from support.server_process import ServerProcess, fresh_data_dir

APP = "https://app.example"
CHAT = {"model": "open-mistral-7b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, demo_data_dir):
    """A loopback server that lets one web app call it and answers one more Host name."""
    proc = ServerProcess(fresh_data_dir(tmp_path_factory, demo_data_dir, "browser"), "--allowed-origins", APP,
                         "--allowed-hosts", "box.lan", env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def default(tmp_path_factory, demo_data_dir):
    """A loopback server with the defaults: no origin allowed, loopback names only."""
    proc = ServerProcess(fresh_data_dir(tmp_path_factory, demo_data_dir, "browser-default"),
                         env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc
    proc.stop()


# ---- CORS ------------------------------------------------------------------------------------------

def test_a_preflight_from_an_allowed_origin_is_answered(guarded):
    r = httpx.options(guarded.url + "/v1/chat/completions", headers={"Origin": APP, **PREFLIGHT})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == APP
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()


def test_an_allowed_origins_request_gets_the_cors_header(guarded):
    r = httpx.post(guarded.url + "/v1/chat/completions", json=CHAT, headers={"Origin": APP})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat", "/api/ai/chat/completions"])
def test_a_foreign_origin_is_refused_before_anything_runs(guarded, default, path):
    for server in (guarded, default):
        before = server.metric("mistral_serve_generation_tokens_total")
        pre = httpx.options(server.url + path, headers={"Origin": "https://evil.example", **PREFLIGHT})
        assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
        # A "simple" request (text/plain, no preflight) would run in the browser: it is refused too.
        r = httpx.post(server.url + path, content=httpx.Request("POST", "/", json={**CHAT, "stream": False}).read(),
                       headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        assert "--allowed-origins" in r.text
        assert server.metric("mistral_serve_generation_tokens_total") == before


def test_no_origin_is_allowed_by_default_but_the_servers_own(default):
    pre = httpx.options(default.url + "/v1/chat/completions", headers={"Origin": APP, **PREFLIGHT})
    assert pre.status_code == 403
    own = httpx.post(default.url + "/v1/chat/completions", json=CHAT, headers={"Origin": default.url})
    assert own.status_code == 200 and "access-control-allow-origin" not in own.headers
    assert httpx.post(default.url + "/v1/chat/completions", json=CHAT).status_code == 200  # no Origin: no browser


def test_a_star_allows_any_origin(tmp_path_factory, demo_data_dir):
    proc = ServerProcess(fresh_data_dir(tmp_path_factory, demo_data_dir, "browser-star"), "--allowed-origins", "*",
                         env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    try:
        r = httpx.options(proc.url + "/v1/models", headers={"Origin": "https://any.example", **PREFLIGHT})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    finally:
        proc.stop()


# ---- Host names (DNS rebinding) --------------------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil",
                                  "10.0.0.1"])
def test_a_foreign_host_is_refused_in_each_paths_shape(default, host):
    for path, shape in (("/v1/models", "openai"), ("/api/ai/generations", "hub"), ("/api/tags", "ollama"),
                        ("/", "openai")):
        r = httpx.get(default.url + path, headers={"Host": host})
        assert r.status_code == 403, (path, host)
        body = r.json()
        message = body["error"] if shape == "ollama" else body["error"]["detail" if shape == "hub" else "message"]
        assert "--allowed-hosts" in message


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.2:1", "[::1]:8000",
                                  "app.localhost"])
def test_loopback_names_are_served(default, host):
    assert httpx.get(default.url + "/v1/models", headers={"Host": host}).status_code == 200


def test_allowed_hosts_extends_the_list(guarded, default):
    assert httpx.get(guarded.url + "/v1/models", headers={"Host": "box.lan:8000"}).status_code == 200
    assert httpx.get(default.url + "/v1/models", headers={"Host": "box.lan:8000"}).status_code == 403
    assert httpx.get(guarded.url + "/v1/models", headers={"Host": "other.lan"}).status_code == 403


def test_a_bad_origin_option_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "mistral_serve.cli", "serve", "--data-dir", str(tmp_path),
                        "--allowed-origins", "app.example"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "scheme://host" in r.stderr
