"""Load: 50 streaming and 50 non-streaming clients at once, with mixed parameters, on both chat
paths and on completions. Every request must complete with a correct body: 0 errors."""

from __future__ import annotations

import asyncio
import random
import time

from support.figures import percentile, report
from support.live import RUNNING, metrics, wait_until
from support.traffic import mixed_request, send_all

CLIENTS = 50  # of each kind: the figure, cheap enough for the reduced run too


def test_concurrent_streaming_and_non_streaming_clients_all_complete(live):
    rng = random.Random(8)
    requests = [mixed_request(rng, i, stream=i % 2 == 0) for i in range(2 * CLIENTS)]
    started = time.monotonic()
    answers = asyncio.run(send_all(live.url, requests))
    wall = time.monotonic() - started
    errors = [(body, a.problems) for (_, body), a in zip(requests, answers) if a.problems]
    latencies = [a.latency for a in answers]
    report("load", f"{CLIENTS} streaming + {CLIENTS} non-streaming concurrent clients, mixed parameters: "
                   f"{len(errors)} errors; latency p50 {percentile(latencies, 0.5):.2f} s, "
                   f"p95 {percentile(latencies, 0.95):.2f} s, max {max(latencies):.2f} s; all done in {wall:.1f} s")
    assert not errors, errors[:5]
    assert wait_until(lambda: metrics(live.url)[RUNNING] == 0, 10) is not None
