"""Overload: a burst far beyond --max-queue gets only 200s and 429s (each with Retry-After), never a
5xx or a hang, and the server is back to full capacity as soon as the burst is over."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from support.figures import report
from support.live import RUNNING, WAITING, metrics
from support.server_process import ServerProcess, fresh_data_dir
from support.traffic import mixed_request, send_all

BURST = 100
MAX_QUEUE = 8
MAX_NUM_SEQS = 8  # so that the burst overflows: 8 running + 8 waiting are admitted at most


@pytest.fixture(scope="module")
def small(tmp_path_factory, demo_data_dir):
    proc = ServerProcess(fresh_data_dir(tmp_path_factory, demo_data_dir, "overload"),
                         "--max-queue", str(MAX_QUEUE), "--max-num-seqs", str(MAX_NUM_SEQS),
                         env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc
    proc.stop()


def test_a_burst_gets_only_200s_and_429s_and_the_server_recovers_at_once(small):
    rng = random.Random(429)
    burst = [mixed_request(rng, i, stream=i % 2 == 0) for i in range(BURST)]
    # A hang would show as a request without an answer after this timeout (status 0).
    answers = asyncio.run(send_all(small.url, burst, timeout=120))
    statuses = Counter(a.status for a in answers)
    refused = [a for a in answers if a.status == 429]
    wrong = [(a.status, a.problems) for a in answers if a.status != 429 and a.problems]
    no_retry_after = [a for a in refused if not a.headers.get("retry-after", "").isdigit()]

    # Right after the burst, the whole admission limit at once: every slot must be back.
    limit = MAX_NUM_SEQS + MAX_QUEUE
    after = asyncio.run(send_all(small.url, [mixed_request(rng, i, stream=i % 2 == 0) for i in range(limit)]))
    first_ok = min((a.latency for a in after if a.status == 200), default=float("nan"))
    report("overload", f"burst of {BURST} (half streamed) on --max-queue {MAX_QUEUE} --max-num-seqs {MAX_NUM_SEQS}: "
                       f"{statuses[200]} x 200, {statuses[429]} x 429 ({len(refused) - len(no_retry_after)} with "
                       f"Retry-After), {sum(n for s, n in statuses.items() if s not in (200, 429))} other, 0 hung; "
                       f"then {limit} at once: {sum(a.status == 200 for a in after)} x 200 (first answer in "
                       f"{first_ok:.2f} s)")
    assert set(statuses) <= {200, 429}, statuses
    assert refused, "a burst of 100 on 16 slots refused nothing"
    assert not wrong, wrong[:5]
    assert not no_retry_after
    for a in refused:
        assert "server is busy" in a.body, a.body  # a JSON error of the path's family, not a bare status
    assert all(a.status == 200 and not a.problems for a in after), [(a.status, a.problems) for a in after]
    idle = metrics(small.url)
    assert idle[RUNNING] == 0 and idle[WAITING] == 0, idle
