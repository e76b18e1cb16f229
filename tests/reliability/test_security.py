"""Security under load: a revoked key is refused from the very next request while other clients
keep going, and every 401 names the scheme to use. (Keys in no log and no generation record:
test_hostile_input.py after hundreds of hostile requests, and tests/e2e/test_keys_usage.py; salted
hashes only: test_keys_usage.py; model output shown as text in the browser:
tests/ui/test_workbench_conversation.py; no open server on a non-loopback address:
test_keys_usage.py.)"""

from __future__ import annotations

import threading

import httpx
import pytest

from support.figures import report
from support.live import chat
from support.server_process import ServerProcess, fresh_data_dir

ROUTES = [("POST", "/v1/chat/completions"), ("POST", "/api/ai/chat/completions"), ("POST", "/v1/completions"),
          ("GET", "/v1/models"), ("GET", "/api/ai/models"), ("GET", "/api/ai/generations"), ("POST", "/tokenize")]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, demo_data_dir):
    from mistral_serve.server.store import Store

    folder = fresh_data_dir(tmp_path_factory, demo_data_dir, "security")
    store = Store(folder / "mistral-serve.db")
    keys = {name: store.create_key(name) for name in ("alice", "bob")}
    proc = ServerProcess(folder, env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc, store, keys
    proc.stop()


def test_every_401_names_the_bearer_scheme(keyed):
    server, _, _ = keyed
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for method, path in ROUTES:
            missing = c.request(method, path)
            wrong = c.request(method, path, headers={"Authorization": "Bearer ms-wrong"})
            assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer", missing.headers
            assert wrong.status_code == 401, wrong.text
            assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_a_key_revoked_under_load_is_refused_from_the_next_request(keyed):
    server, store, keys = keyed
    revoked = threading.Event()
    outcomes: dict[str, list[tuple[bool, int]]] = {"alice": [], "bob": []}  # (sent after the revoke, status)

    def client(name: str) -> None:
        with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {keys[name]}"}) as c:
            while len([o for o in outcomes[name] if o[0]]) < 40:
                after = revoked.is_set()  # read before sending: the request left after the revoke
                status = c.post("/v1/chat/completions", json=chat(f"{name} asks", max_tokens=2)).status_code
                outcomes[name].append((after, status))

    threads = [threading.Thread(target=client, args=(name,)) for name in ("alice", "bob") for _ in range(4)]
    for t in threads:
        t.start()
    while len(outcomes["alice"]) < 20:
        threading.Event().wait(0.05)
    assert store.revoke_key("alice")  # what `mistral-serve keys revoke alice` does
    revoked.set()
    for t in threads:
        t.join(120)
    alice_after = [status for after, status in outcomes["alice"] if after]
    bob = [status for _, status in outcomes["bob"]]
    report("security", f"alice's key revoked while 8 clients (4 alice, 4 bob) were sending: alice "
                       f"{sum(s == 200 for a, s in outcomes['alice'] if not a)} x 200 before, "
                       f"{alice_after.count(401)}/{len(alice_after)} x 401 from the first request after; bob "
                       f"{bob.count(200)}/{len(bob)} x 200")
    assert set(status for after, status in outcomes["alice"] if not after) <= {200, 401}
    assert alice_after and set(alice_after) == {401}
    assert set(bob) == {200}
