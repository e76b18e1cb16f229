"""Abandoned streams: clients that disconnect mid-stream at random points, some while still
queued, leave nothing behind: no running request, no admission slot, no KV block beyond the idle
figure, and one log record each."""

from __future__ import annotations

import asyncio
import random
import time

import httpx

from support.figures import report
from support.live import IN_FLIGHT, RUNNING, USED, WAITING, chat, metrics, wait_until

CLIENTS = 100


async def leave_after(client: httpx.AsyncClient, i: int, events: int, delay: float) -> str | None:
    """Stream a long answer, read `events` data lines (0: only the status), then hang up.
    Returns the generation id when it was seen."""
    await asyncio.sleep(delay)
    body = chat(f"abandoned {i}", max_tokens=2000, ignore_eos=True, stream=True)
    gid, seen = None, 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if seen >= events:
                break
            if line.startswith("data: {"):
                gid = gid or line.split('"id": "chatcmpl-', 1)[1].split('"', 1)[0]
                seen += 1
    # leaving the block before the stream's end closes the connection: the client is gone
    return gid


def test_clients_that_disconnect_mid_stream_leave_nothing_behind(live):
    idle = metrics(live.url)
    assert idle[RUNNING] == 0 and idle[IN_FLIGHT] == 0
    rng = random.Random(100)
    plan = [(i, rng.choice([0, 1, 1, 2, 5, 10, 20, 40]), rng.uniform(0, 2)) for i in range(CLIENTS)]

    async def main():
        # more clients than --max-num-seqs (64): some hang up while still queued
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=live.url, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(leave_after(client, *p) for p in plan))

    started = time.monotonic()
    ids = asyncio.run(main())
    back = lambda m: (m[RUNNING], m[WAITING], m[IN_FLIGHT], m[USED]) == (0, 0, 0, idle[USED])  # noqa: E731
    settled = wait_until(lambda: back(metrics(live.url)), 10)
    after = metrics(live.url)
    log = httpx.get(live.url + "/api/ai/generations", params={"limit": 1000}, timeout=10).json()["data"]
    records = {g["id"]: g for g in log if g["created"] >= int(started) - 1}
    mine = [records.get(gid) for gid in ids if gid]
    report("abandoned streams", f"{CLIENTS} clients hung up after 0-40 events ({sum(e == 0 for _, e, _ in plan)} "
                                f"right after the headers): {'back to idle' if settled is not None else 'NOT idle'} "
                                f"{settled if settled is not None else 10:.2f} s after the last left (running "
                                f"{after[RUNNING]:g}, waiting {after[WAITING]:g}, in flight {after[IN_FLIGHT]:g}, "
                                f"KV blocks used {after[USED]:g}, idle figure {idle[USED]:g}); "
                                f"{sum(1 for g in mine if g and g['status'] == 499)}/{len(mine)} logged as 499")
    assert settled is not None, after
    assert all(g is not None and g["status"] == 499 and g["completion_tokens"] < 2000 for g in mine), mine
    assert len(records) >= CLIENTS  # one record per request, the ids never seen included
