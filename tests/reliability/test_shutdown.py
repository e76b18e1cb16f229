"""Shutdown: SIGTERM during running streams ends each of them cleanly and leaves a consistent
store; a restart serves at once. SIGKILL in the middle of writes loses no committed usage record
(SQLite in WAL mode, one transaction per record)."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import httpx

from support.figures import report, size
from support.live import RUNNING, Streams, chat, metrics, wait_until
from support.server_process import ServerProcess, fresh_data_dir

STREAMS = 20
GRACE = 3  # --shutdown-timeout: the short streams finish within it, the long ones cannot
KILLS = size(1, 3)


def store_rows(data_dir: Path) -> tuple[str, dict[str, int]]:
    """(PRAGMA integrity_check, {generation id: status}) of a server's store, read as a new
    process would after a crash (opening it replays the WAL)."""
    with closing(sqlite3.connect(data_dir / "mistral-serve.db")) as db:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        return check, dict(db.execute("SELECT id, status FROM generations").fetchall())


def restart_and_serve(data_dir: Path) -> float:
    """Seconds from starting a new server on `data_dir` to its first answered request."""
    started = time.monotonic()
    again = ServerProcess(data_dir, env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready(timeout=60)
    try:
        r = httpx.post(again.url + "/v1/chat/completions", json=chat("hello again", max_tokens=3), timeout=60)
        assert r.status_code == 200, r.text
        return time.monotonic() - started
    finally:
        again.stop()


def stream_id(result: dict) -> str:
    return result["events"][0]["id"].removeprefix("chatcmpl-")


def test_sigterm_during_running_streams_ends_each_cleanly_and_the_store_stays_consistent(
        tmp_path_factory, demo_data_dir):
    data = fresh_data_dir(tmp_path_factory, demo_data_dir, "sigterm20")
    server = ServerProcess(data, "--shutdown-timeout", str(GRACE), env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    try:
        # Half should finish within the grace period, half cannot; either way each must end cleanly.
        short = Streams(server.url, STREAMS // 2, max_tokens=40)
        long = Streams(server.url, STREAMS // 2, max_tokens=5000)
        for started in short.started + long.started:
            assert started.wait(30), "streams did not start"
        assert wait_until(lambda: metrics(server.url)[RUNNING] == STREAMS, 30) is not None, metrics(server.url)
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(GRACE + 30)
        exited = time.monotonic() - sent
        short.join(30)
        long.join(30)
    finally:
        server.stop()
    results = short.results + long.results
    broken = [r for r in results if not isinstance(r, dict) or not r["done"] or not (r["finishes"] or r["errors"])]
    completed = [r for r in results if isinstance(r, dict) and r["finishes"] and not r["errors"]]
    ended = [r for r in results if isinstance(r, dict) and r["errors"]]
    check, rows = store_rows(data)
    seen = [stream_id(r) for r in results if isinstance(r, dict) and r["events"]]
    restart = restart_and_serve(data)
    report("shutdown", f"SIGTERM during {STREAMS} streams (--shutdown-timeout {GRACE}): {len(completed)} completed, "
                       f"{len(ended)} ended with an error event then [DONE], {len(broken)} cut; exit code {code} after "
                       f"{exited:.1f} s; store integrity '{check}', {sum(i in rows for i in seen)}/{len(seen)} "
                       f"streams logged; restart served its first request {restart:.1f} s after starting")
    assert not broken, broken
    assert code == 0
    assert check == "ok"
    assert all(i in rows for i in seen) and len(seen) == STREAMS
    for r in completed:
        assert rows[stream_id(r)] == 200
    for r in ended:
        assert r["errors"][0]["code"] == "engine_stopped" and rows[stream_id(r)] == 503


def test_sigkill_mid_write_loses_no_committed_usage_record(tmp_path_factory, demo_data_dir):
    data = fresh_data_dir(tmp_path_factory, demo_data_dir, "sigkill")
    answered: list[str] = []  # ids of the requests whose answer arrived: their record was committed first
    totals = []
    for kill in range(KILLS):
        server = ServerProcess(data, env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
        stop = threading.Event()

        def client(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                while not stop.is_set():
                    try:
                        r = c.post("/v1/chat/completions", json=chat(f"kill {kill} client {i}", max_tokens=2))
                    except httpx.HTTPError:
                        return  # the server died under this request
                    if r.status_code == 200:
                        answered.append(r.json()["id"].removeprefix("chatcmpl-"))

        clients = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in clients:
            t.start()
        before = len(answered)
        assert wait_until(lambda: len(answered) >= before + 100, 60) is not None
        server.proc.send_signal(signal.SIGKILL)  # with 16 requests in flight, some mid-write
        server.proc.wait(10)
        stop.set()
        for t in clients:
            t.join(30)
        server.stop()
        check, rows = store_rows(data)
        totals.append((len(answered), sum(i in rows for i in answered), check))
    restart = restart_and_serve(data)
    lost = [i for i in answered if i not in store_rows(data)[1]]
    report("shutdown", f"SIGKILL under 16 concurrent clients, {KILLS} time(s) on one store: "
                       + "; ".join(f"after kill {k}, {kept} of the {n} answered requests in the store, "
                                   f"integrity '{check}'" for k, (n, kept, check) in enumerate(totals, 1))
                       + f"; restart served {restart:.1f} s after starting")
    assert not lost, lost[:10]
    assert all(check == "ok" for _, _, check in totals)
