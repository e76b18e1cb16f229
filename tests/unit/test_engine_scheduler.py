"""Scheduler on its own: token budget, decode-first order, chunking, seat limit, preemption."""

import pytest

from mistral_serve.config import EngineConfig
from mistral_serve.engine.blocks import BlockManager
from mistral_serve.engine.params import SamplingParams
from mistral_serve.engine.scheduler import Scheduler
from mistral_serve.engine.sequence import Sequence, Status
from mistral_serve.engine.stop import StopBuffer

_ids = iter(range(10**6))


def seq(prompt_len: int, max_new: int = 100, base: int | None = None) -> Sequence:
    """A sequence with its own prompt (no shared prefix) unless `base` is given."""
    sid = next(_ids)
    base = 1000 + 1000 * (sid % 30) if base is None else base
    return Sequence(seq_id=sid, request_id=f"r{sid}", index=0,
                    prompt_ids=[base + i for i in range(prompt_len)], params=SamplingParams(),
                    max_len=prompt_len + max_new, generator=None, stop=StopBuffer([]), detok=None)


def make(budget=64, max_seqs=64, blocks=64, block_size=4, window=None, caching=True):
    bm = BlockManager(blocks, block_size, caching)
    return Scheduler(EngineConfig(max_num_seqs=max_seqs, max_num_batched_tokens=budget), bm, window), bm


def fake_step(sch: Scheduler):
    """schedule -> (pretend to run) -> after_step -> every fully computed sequence gets a token."""
    batch = sch.schedule()
    sch.after_step(batch)
    for s, _ in batch.items:
        if s.num_computed == s.num_tokens:
            s.output_ids.append(7)
    return batch


def test_one_step_fills_the_budget_and_chunks_the_prompt_that_does_not_fit():
    sch, bm = make(budget=64)
    a, b, c = seq(50), seq(50), seq(50)
    for s in (a, b, c):
        sch.add(s)
    batch = fake_step(sch)
    assert [(s, n) for s, n in batch.items] == [(a, 50), (b, 14)]
    assert batch.num_tokens == 64
    assert sch.running == [a, b] and list(sch.waiting) == [c]
    assert a.output_ids == [7] and b.output_ids == []  # b's prompt is not read yet: no token
    # Next step: a decodes (1), b reads its remaining 36, c gets the rest (27 of 50).
    batch = fake_step(sch)
    assert [(s, n) for s, n in batch.items] == [(a, 1), (b, 36), (c, 27)]
    batch = fake_step(sch)
    assert [(s, n) for s, n in batch.items] == [(a, 1), (b, 1), (c, 23)]


def test_budget_is_never_exceeded_and_every_prompt_is_read_exactly_once():
    sch, bm = make(budget=16, blocks=256)
    seqs = [seq(n, max_new=3) for n in (3, 40, 17, 5, 64, 1, 33)]
    for s in seqs:
        sch.add(s)
    computed = {s.seq_id: 0 for s in seqs}
    for _ in range(200):
        if not sch.has_work():
            break
        batch = sch.schedule()
        assert 0 < batch.num_tokens <= 16
        assert len({id(s) for s, _ in batch.items}) == len(batch.items)
        for s, n in batch.items:
            assert n >= 1
            assert s.num_computed + n <= s.num_tokens
            computed[s.seq_id] += n
        sch.after_step(batch)
        for s, _ in batch.items:
            if s.num_computed == s.num_tokens:
                s.output_ids.append(7)
                if s.num_tokens >= s.max_len:
                    sch.finish(s)
    assert not sch.has_work()
    # Each prompt token and each generated token except the last is computed once.
    for s in seqs:
        assert computed[s.seq_id] == s.num_tokens - 1
        assert len(s.output_ids) == 3
    assert bm.ref_counts == [0] * 256


def test_decoding_sequences_come_before_new_prompts():
    sch, _ = make(budget=32)
    a = seq(10)
    sch.add(a)
    fake_step(sch)  # a read its prompt and decodes from now on
    b = seq(100)
    sch.add(b)
    batch = fake_step(sch)
    assert [(s, n) for s, n in batch.items] == [(a, 1), (b, 31)]
    c = seq(5)
    sch.add(c)
    batch = fake_step(sch)
    # Running first, oldest first (a decodes, b continues its prompt), the newcomer waits.
    assert [(s, n) for s, n in batch.items] == [(a, 1), (b, 31)]
    assert list(sch.waiting) == [c]


def test_max_num_seqs_is_respected():
    sch, bm = make(budget=512, max_seqs=3)
    seqs = [seq(4) for _ in range(5)]
    for s in seqs:
        sch.add(s)
    batch = fake_step(sch)
    assert [s for s, _ in batch.items] == seqs[:3]
    assert len(sch.running) == 3 and len(sch.waiting) == 2
    batch = fake_step(sch)
    assert len(batch.items) == 3 and len(sch.running) == 3
    sch.finish(seqs[0])
    batch = fake_step(sch)
    assert [s for s, _ in batch.items] == [seqs[1], seqs[2], seqs[3]]
    assert seqs[0].status is Status.FINISHED and bm.table(seqs[0].seq_id) == []


def test_admission_waits_for_free_blocks():
    sch, bm = make(budget=64, blocks=4, block_size=4)
    a, b = seq(12), seq(8)
    sch.add(a)
    sch.add(b)
    batch = fake_step(sch)
    assert [s for s, _ in batch.items] == [a]  # a took 3 blocks, b needs 2
    assert list(sch.waiting) == [b] and b.status is Status.WAITING


def test_preemption_frees_the_newest_and_requeues_it_first():
    sch, bm = make(budget=64, blocks=4, block_size=4)
    a, b = seq(7), seq(7)
    sch.add(a)
    sch.add(b)
    fake_step(sch)  # both read 7 tokens (2 blocks each), both have 8 tokens now
    assert bm.num_free == 0
    fake_step(sch)  # the 8th token of each still fits in the 2nd block
    # Now a needs a 3rd block for its 9th token: b (the newest) is preempted.
    batch = sch.schedule()
    assert batch.preempted == [b]
    assert [(s, n) for s, n in batch.items] == [(a, 1)]
    assert sch.num_preemptions == 1
    assert list(sch.waiting) == [b] and b.status is Status.WAITING
    assert b.num_computed == 0 and bm.table(b.seq_id) == [] and b.output_ids == [7, 7]  # output kept
    assert sum(bm.ref_counts) == 3
    sch.after_step(batch)


def test_a_sequence_that_cannot_grow_preempts_itself_when_it_is_the_newest():
    sch, bm = make(budget=64, blocks=2, block_size=4)
    a = seq(8)
    sch.add(a)
    fake_step(sch)
    batch = sch.schedule()  # a needs a 3rd block, nothing else to preempt
    assert batch.preempted == [a] and not batch.items
    assert list(sch.waiting) == [a] and bm.ref_counts == [0, 0]


def test_after_step_drops_blocks_out_of_the_window():
    sch, bm = make(budget=64, blocks=16, block_size=4, window=4)
    a = seq(20)
    sch.add(a)
    fake_step(sch)  # 20 tokens computed: the next query (position 20) sees 17..20
    assert bm.table(a.seq_id)[:4] == [-1, -1, -1, -1] and bm.table(a.seq_id)[4] >= 0
    assert bm.num_used == 1


def test_cached_prefix_is_skipped_at_admission():
    sch, bm = make(budget=64, blocks=32, block_size=4)
    a = seq(20, base=500)
    sch.add(a)
    fake_step(sch)
    b = seq(22, base=500)  # same first 20 tokens
    sch.add(b)
    batch = fake_step(sch)
    assert (b, 2) in batch.items  # the 5 full blocks a computed come from the cache
    assert b.num_cached == 20 and bm.table(b.seq_id)[:5] == bm.table(a.seq_id)[:5]
    c = seq(20, base=500)  # all of a's prompt: the last token is still computed, so only 4 blocks
    sch.add(c)
    batch = fake_step(sch)
    assert (c, 4) in batch.items and c.num_cached == 16


def test_scheduler_config_rejects_nonsense():
    with pytest.raises(ValueError):
        EngineConfig(max_num_seqs=0)
    with pytest.raises(ValueError):
        EngineConfig(max_num_batched_tokens=0)
