"""AsyncEngine: the engine on its own thread, one asyncio stream per request."""

import asyncio
import time

import pytest

from support.engine_helpers import engine, greedy, prompt, reference
from mistral_serve.engine.async_engine import AsyncEngine, EngineDeadError
from mistral_serve.engine.params import ParamError, SamplingParams


@pytest.fixture
def aeng():
    a = AsyncEngine(engine(max_num_batched_tokens=48))
    yield a
    a.shutdown()
    assert not a._thread.is_alive()


def idle(a: AsyncEngine, timeout: float = 2.0) -> bool:
    """Poll until the engine holds no request and no block."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e = a.engine
        if not e.requests and all(c == 0 for c in e.blocks.ref_counts) and not e.scheduler.running:
            return True
        time.sleep(0.01)
    return False


async def collect(a: AsyncEngine, p, params):
    tokens, finishes, outs = [], [], []
    async for out in a.generate(p, params):
        outs.append(out)
        for d in out.deltas:
            tokens.extend(d.token_ids)
            finishes.append(d.finish_reason)
    return tokens, finishes, outs


def test_concurrent_streams_complete_and_equal_the_sync_results(aeng):
    prompts = [prompt(n, seed=60 + n) for n in (5, 80, 23, 41, 3, 120, 17, 64)]
    max_new = [4, 9, 13, 6, 11, 8, 15, 10]

    async def main():
        return await asyncio.gather(*(collect(aeng, p, greedy(m)) for p, m in zip(prompts, max_new)))

    results = asyncio.run(main())
    assert len(results) == 8
    for (tokens, finishes, outs), p, m in zip(results, prompts, max_new):
        assert tokens == reference(p, m)
        assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
        assert outs[-1].finished and not any(o.finished for o in outs[:-1])
    assert idle(aeng)


def test_leaving_a_stream_early_aborts_the_request(aeng):
    async def main():
        stream = aeng.generate(prompt(30, seed=1), greedy(400 - 30), request_id="leaver")
        got = 0
        seq = None
        async for out in stream:
            got += len(out.deltas[0].token_ids)
            seq = seq or aeng.engine.requests["leaver"].seqs[0]
            if got >= 3:
                break
        await stream.aclose()
        return got, seq

    got, seq = asyncio.run(main())
    assert got == 3
    assert idle(aeng, 2.0), (aeng.engine.requests, aeng.engine.blocks.ref_counts)
    # Ended by the abort, not by running to its end.
    assert seq.finish_reason == "abort" and len(seq.output_ids) < 370
    assert aeng.alive


def test_a_cancelled_consumer_aborts_its_request(aeng):
    seqs = []

    async def consume(first: asyncio.Future):
        async for _ in aeng.generate(prompt(20, seed=2), greedy(300), request_id="cancelled"):
            if not first.done():
                seqs.append(aeng.engine.requests["cancelled"].seqs[0])
                first.set_result(True)

    async def main():
        first = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(consume(first))
        await first
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The other requests keep being served.
        return await collect(aeng, prompt(12, seed=3), greedy(5))

    tokens, _, _ = asyncio.run(main())
    assert tokens == reference(prompt(12, seed=3), 5)
    assert idle(aeng)
    assert seqs[0].finish_reason == "abort" and len(seqs[0].output_ids) < 300


def test_invalid_request_raises_in_the_callers_frame(aeng):
    async def main():
        with pytest.raises(ParamError) as info:
            async for _ in aeng.generate([], SamplingParams(max_tokens=3)):
                pass
        assert info.value.param == "prompt"
        with pytest.raises(ParamError):
            async for _ in aeng.generate([1, 2000], SamplingParams(max_tokens=10_000)):
                pass

    asyncio.run(main())
    assert idle(aeng)


def test_shutdown_ends_the_thread_and_fails_streams(aeng):
    async def main():
        stream = aeng.generate(prompt(10, seed=4), greedy(450))
        await stream.__anext__()
        await asyncio.get_running_loop().run_in_executor(None, aeng.shutdown)
        with pytest.raises(EngineDeadError):
            async for _ in stream:
                pass
        with pytest.raises(EngineDeadError):
            async for _ in aeng.generate(prompt(5, seed=5), greedy(3)):
                pass

    asyncio.run(asyncio.wait_for(main(), 10))
    assert not aeng._thread.is_alive()
    assert not aeng.alive
    assert not aeng.engine.requests
    assert all(c == 0 for c in aeng.engine.blocks.ref_counts)


def test_a_duplicate_request_id_is_refused_without_hurting_the_first(aeng):
    p = prompt(15, seed=6)

    async def main():
        first = aeng.generate(p, greedy(40), request_id="dup")
        out = await first.__anext__()
        tokens = list(out.deltas[0].token_ids)
        with pytest.raises(ValueError):
            async for _ in aeng.generate(prompt(5, seed=7), greedy(3), request_id="dup"):
                pass
        async def rest():
            async for out in first:
                tokens.extend(out.deltas[0].token_ids)

        try:
            await asyncio.wait_for(rest(), 3)
        except asyncio.TimeoutError:
            pytest.fail(f"the first stream stalled after {len(tokens)} tokens once a duplicate id was refused")
        return tokens

    tokens = asyncio.run(main())
    assert tokens == reference(p, 40)
    assert idle(aeng)


def test_one_failing_request_does_not_fail_the_batch(aeng):
    # A request whose own step work fails (here its detokenizer) ends with that error alone; the
    # request decoding beside it finishes with the tokens it would have had alone.
    eng = aeng.engine
    real_add = eng.add_request

    def add_request(prompt_ids, params, request_id=None):
        rid = real_add(prompt_ids, params, request_id)
        if params.seed == 666:
            for seq in eng.requests[rid].seqs + eng.requests[rid].held:
                def broken(token):
                    raise RuntimeError("detokenizer exploded")
                seq.detok.add = broken
        return rid

    eng.add_request = add_request
    good, bad = prompt(20, 1), prompt(20, 2)

    async def main():
        return await asyncio.gather(collect(aeng, good, greedy(12)),
                                    collect(aeng, bad, SamplingParams(temperature=0, max_tokens=12, seed=666)),
                                    return_exceptions=True)

    ok, failed = asyncio.run(main())
    assert isinstance(failed, RuntimeError) and "exploded" in str(failed)
    assert ok[0] == reference(good, 12) and ok[1][-1] == "length"
    assert idle(aeng)
