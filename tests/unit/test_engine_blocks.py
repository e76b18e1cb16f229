"""BlockManager: pure bookkeeping of the paged KV cache (no tensors, no model)."""

import itertools

import pytest

from mistral_serve.engine.blocks import BlockManager, NoFreeBlocks, block_hash

_ids = itertools.count()


def alloc(bm: BlockManager, tokens, max_new):
    """Allocate a new sequence for `tokens`: (its id, its block table, number of cached tokens)."""
    sid = next(_ids)
    cached = bm.allocate(sid, tokens, max_new)
    return sid, bm.table(sid), cached


def filled(bm: BlockManager, tokens, max_new=None):
    """Allocate a sequence for `tokens` and publish its full blocks, as after its prefill step:
    (its id, its block table, number of cached tokens, its full blocks' hashes)."""
    sid, table, cached = alloc(bm, tokens, len(tokens) if max_new is None else max_new)
    bm.register_full_blocks(sid, tokens, len(tokens))
    return sid, table, cached, bm._hashes[sid]


def test_allocate_takes_blocks_for_the_tokens_and_counts_them():
    bm = BlockManager(8, 4)
    _, table, cached = alloc(bm, list(range(10)), 10)
    assert cached == 0
    assert len(table) == 3 and len(set(table)) == 3
    assert all(bm.ref_counts[b] == 1 for b in table)
    assert sum(bm.ref_counts) == 3
    assert bm.num_free == 5 and bm.num_used == 3


def test_allocate_only_takes_room_for_max_new_tokens_and_grow_extends():
    bm = BlockManager(8, 4)
    sid, table, _ = alloc(bm, list(range(20)), 5)  # a first chunk of 5 tokens: 2 blocks
    assert len(table) == 2
    bm.grow(sid, 9)
    assert len(bm.table(sid)) == 3
    bm.grow(sid, 12)  # still fits in 3 blocks
    assert len(bm.table(sid)) == 3
    assert bm.num_free == 5
    assert len(set(bm.table(sid))) == 3


def test_block_hash_chains_on_the_parent():
    a = block_hash(None, [1, 2, 3, 4])
    assert a == block_hash(None, [1, 2, 3, 4])
    assert a != block_hash(None, [1, 2, 3, 5])
    assert block_hash(a, [5, 6, 7, 8]) != block_hash(None, [5, 6, 7, 8])
    bm = BlockManager(4, 4)
    hashes = bm.prefix_hashes([1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert hashes == [a, block_hash(a, [5, 6, 7, 8])]


def test_equal_prefix_shares_blocks_and_counts_hits():
    bm = BlockManager(16, 4)
    tokens = list(range(100, 110))  # 2 full blocks + 2 tokens
    _, table_a, cached_a, hashes = filled(bm, tokens)
    assert cached_a == 0 and len(hashes) == 2
    other = tokens[:8] + [7, 7, 7]
    _, table_b, cached_b = alloc(bm, other, len(other))
    assert cached_b == 8
    assert table_b[:2] == table_a[:2]
    assert table_b[2] not in table_a
    assert [bm.ref_counts[b] for b in table_a] == [2, 2, 1]
    assert bm.hits == 8
    assert bm.queries == len(tokens) + len(other)
    assert bm.hit_rate == pytest.approx(8 / 21)


def test_a_different_first_block_breaks_the_chain():
    bm = BlockManager(16, 4)
    tokens = list(range(100, 112))
    filled(bm, tokens)
    # Same second and third block, different first one: equal blocks later in the prompt are
    # not equal prefixes (their keys/values depend on what came before).
    other = [1, 2, 3, 4] + tokens[4:] + [5]
    _, _, cached = alloc(bm, other, len(other))
    assert cached == 0


def test_cached_prefix_leaves_one_token_to_compute():
    bm = BlockManager(16, 4)
    tokens = list(range(100, 108))  # exactly 2 full blocks
    filled(bm, tokens)
    assert len(bm.cached_prefix(tokens)) == 1  # the last token must still be computed
    _, _, cached = alloc(bm, tokens, len(tokens))
    assert cached == 4
    assert len(bm.cached_prefix(tokens + [1])) == 2


def test_prefix_caching_off_shares_nothing():
    bm = BlockManager(16, 4, enable_prefix_caching=False)
    tokens = list(range(100, 110))
    a, table_a, _, hashes = filled(bm, tokens)
    assert hashes == []
    b, table_b, cached = alloc(bm, tokens, len(tokens))
    assert cached == 0 and not set(table_a) & set(table_b)
    assert bm.hits == 0
    bm.free(a)
    bm.free(b)
    assert bm.ref_counts == [0] * 16 and bm.num_free == 16


def test_released_hashed_blocks_stay_reusable_until_evicted():
    bm = BlockManager(4, 4)
    tokens = list(range(100, 109))  # 2 full blocks + 1
    sid, table, _, _ = filled(bm, tokens)
    bm.free(sid)
    assert bm.ref_counts == [0, 0, 0, 0]
    assert bm.num_free == 4  # idle cached blocks count as free...
    sid, again, cached = alloc(bm, tokens, len(tokens))
    assert cached == 8 and again[:2] == table[:2]  # ...but are found again while not evicted
    bm.free(sid)


def test_eviction_takes_unhashed_blocks_first_then_least_recently_used():
    bm = BlockManager(6, 2)
    a = [10, 11, 12, 13, 14]  # 2 full blocks + 1 partial
    b = [20, 21, 22, 23, 24]
    sa, table_a, _, _ = filled(bm, a)
    sb, table_b, _, _ = filled(bm, b)
    bm.free(sa)  # a's blocks released first: least recently used
    bm.free(sb)
    assert bm.num_free == 6
    # The two partial (unhashed) blocks are taken before any cached one.
    _, x, _ = alloc(bm, [1, 2, 3], 3)
    assert set(x) == {table_a[2], table_b[2]}
    assert len(bm.cached_prefix(a)) == 2 and len(bm.cached_prefix(b)) == 2
    # Next come a's blocks, tail first: a's prefix is lost block by block, b's stays.
    _, y, _ = alloc(bm, [5], 1)
    assert y == [table_a[1]]
    assert len(bm.cached_prefix(a)) == 1 and len(bm.cached_prefix(b)) == 2
    _, z, _ = alloc(bm, [6], 1)
    assert z == [table_a[0]]
    assert bm.cached_prefix(a) == [] and len(bm.cached_prefix(b)) == 2
    _, w, _ = alloc(bm, [7], 1)
    assert w == [table_b[1]]


def test_resident_memory_follows_the_peak_load_not_the_number_of_requests():
    """The storage is lazily allocated: a block once used stays resident. A long run of requests
    must reuse those blocks (freed ones, then idle cached ones once the cache is as large as the
    peak use) rather than creep through the whole pool, while a hot prefix still hits."""
    bm = BlockManager(256, 2)
    shared = [1, 2, 3, 4]  # two full blocks every request starts with
    touched = set()
    for i in range(100):
        sid, table, cached, _ = filled(bm, shared + [100 + i, 200 + i, 300 + i])  # 4 blocks
        assert cached == (0 if i == 0 else 4)
        touched.update(table)
        bm.free(sid)
    assert bm.peak_used == 4
    assert len(touched) <= 2 * bm.peak_used, sorted(touched)
    assert bm.num_free == 256
    # More blocks in use at once than ever before: new memory is taken, the cache is kept.
    held = [alloc(bm, [i, i, i], 3)[1] for i in range(10)]
    assert len({b for t in held for b in t}) == 20
    assert bm.cached_prefix(shared + [0]) != []


def test_reuse_makes_a_block_most_recently_used():
    bm = BlockManager(4, 2)
    a, b = [10, 11, 12], [20, 21, 22]
    sa, table_a, _, _ = filled(bm, a, max_new=2)  # exactly one block each, full and hashed
    sb, table_b, _, _ = filled(bm, b, max_new=2)
    bm.free(sa)
    bm.free(sb)
    sid, again, cached = alloc(bm, a, 1)  # a's block used again, then released: now the newest
    assert cached == 2 and again[0] == table_a[0] and len(again) == 2
    bm.free(sid)
    assert alloc(bm, [1], 1)[1] == [again[1]]  # a freed unhashed block comes first
    _, (victim,), _ = alloc(bm, [5], 1)  # then the least recently used cached one
    assert victim == table_b[0]
    assert bm.cached_prefix(a) == table_a and bm.cached_prefix(b) == []


def test_register_skips_dropped_blocks_and_duplicate_contents():
    bm = BlockManager(8, 2)
    tokens = [10, 11, 12, 13, 14]
    # Two sequences computed the same prefix side by side (neither found the other in the cache).
    s1, t1, _ = alloc(bm, tokens, 5)
    s2, t2, _ = alloc(bm, tokens, 5)
    bm.register_full_blocks(s1, tokens, 5)
    bm.register_full_blocks(s2, tokens, 5)
    h1, h2 = bm._hashes[s1], bm._hashes[s2]
    assert h1 == h2 and len(h1) == 2
    assert bm.cached_prefix(tokens + [1]) == t1[:2]
    # Freeing the duplicate returns its blocks as plain free blocks, the original stays cached.
    bm.free(s2)
    bm.free(s1)
    assert bm.num_free == 8
    assert bm.cached_prefix(tokens + [1]) == t1[:2]
    # A dropped entry (-1) is never registered.
    s3, t3, _ = alloc(bm, [30, 31, 32, 33, 34], 5)
    dropped = t3[0]
    bm.drop_out_of_window(s3, 5, 4)  # block 0 (positions 0-1) is out of the window: -1
    bm.register_full_blocks(s3, [30, 31, 32, 33, 34], 5)
    h3 = bm._hashes[s3]
    assert len(h3) == 2
    assert dropped not in bm._hash_of and -1 not in bm._hash_of


def test_register_hashes_each_block_once_across_steps():
    bm = BlockManager(8, 2)
    tokens = [10, 11, 12, 13, 14, 15, 16]
    sid, _, _ = alloc(bm, tokens, 3)
    bm.register_full_blocks(sid, tokens, 3)
    assert len(bm._hashes[sid]) == 1
    bm.grow(sid, 7)
    bm.register_full_blocks(sid, tokens, 7)
    assert bm._hashes[sid] == bm.prefix_hashes(tokens)


def test_drop_out_of_window_releases_only_blocks_no_query_can_see():
    bm = BlockManager(8, 4)
    sid, kept, _ = alloc(bm, list(range(20)), 20)  # 5 blocks, positions 0..19
    # The query at position 13 with window 4 sees 10..13: blocks 0 (0-3) and 1 (4-7) are dead,
    # block 2 (8-11) is still needed.
    bm.drop_out_of_window(sid, 13, 4)
    assert bm.table(sid) == [-1, -1, *kept[2:]]
    assert [bm.ref_counts[b] for b in kept] == [0, 0, 1, 1, 1]
    # Position 14 sees 11..14: block 2 still alive (holds 11).
    bm.drop_out_of_window(sid, 14, 4)
    assert bm.table(sid)[2] == kept[2]
    # Position 15 sees 12..15: block 2 is dead now. Dropping again is harmless.
    bm.drop_out_of_window(sid, 15, 4)
    bm.drop_out_of_window(sid, 15, 4)
    assert bm.table(sid) == [-1, -1, -1, *kept[3:]]
    assert bm.ref_counts[kept[2]] == 0
    bm.free(sid)  # skips the -1 entries
    assert bm.ref_counts == [0] * 8


def test_drop_out_of_window_with_short_positions_drops_nothing():
    bm = BlockManager(4, 4)
    sid, _, _ = alloc(bm, list(range(8)), 8)
    bm.drop_out_of_window(sid, 3, 8)
    bm.drop_out_of_window(sid, 8, 8)  # sees 1..8: block 0 still holds 1..3
    assert -1 not in bm.table(sid)


def test_reset_prefix_cache_forgets_idle_blocks_only():
    bm = BlockManager(8, 2)
    a, b = [10, 11, 12, 13, 14], [20, 21, 22, 23, 24]
    sa, table_a, _, _ = filled(bm, a)
    sb, table_b, _, _ = filled(bm, b)
    bm.free(sa)
    bm.reset_prefix_cache()
    assert bm.cached_prefix(a) == []
    assert bm.cached_prefix(b) == table_b[:2]  # in use: kept
    assert bm.num_free == 8 - 3
    assert sorted(bm._free + list(bm._evictable)) == sorted(set(range(8)) - set(table_b))
    bm.free(sb)
    assert bm.cached_prefix(b) == table_b[:2]
    assert bm.num_free == 8


def test_no_free_blocks_leaves_the_state_unchanged():
    bm = BlockManager(3, 4)
    sid, _, _ = alloc(bm, list(range(8)), 8)
    before = (list(bm.ref_counts), bm.num_free, bm.hits, bm.queries)
    with pytest.raises(NoFreeBlocks):
        alloc(bm, list(range(50, 59)), 9)  # needs 3 blocks, 1 free
    with pytest.raises(NoFreeBlocks):
        bm.grow(sid, 13)  # needs 2 more blocks, 1 free
    assert (list(bm.ref_counts), bm.num_free, bm.hits, bm.queries) == before
    assert len(bm.table(sid)) == 2
    bm.grow(sid, 12)
    assert bm.num_free == 0
    with pytest.raises(NoFreeBlocks):
        alloc(bm, [1], 1)


def test_idle_cached_prefix_blocks_are_not_counted_as_room_for_their_own_request():
    bm = BlockManager(3, 4)
    prefix = list(range(100, 108))
    sid, table, _, _ = filled(bm, prefix + [1])  # 3 blocks: 2 cached full ones + 1 partial
    bm.free(sid)
    assert bm.num_free == 3
    # 13 tokens: 2 cached blocks + 2 new ones, but only 1 block is free besides the cached two.
    with pytest.raises(NoFreeBlocks):
        alloc(bm, prefix + [1, 2, 3, 4, 5], 13)
    assert bm.ref_counts == [0, 0, 0] and bm.num_free == 3
    assert bm.cached_prefix(prefix + [1]) == table[:2]  # nothing evicted by the failed attempt
    _, got, cached = alloc(bm, prefix + [1, 2, 3, 4, 5], 4)  # a first chunk fits
    assert cached == 8 and got[:2] == table[:2] and len(got) == 3


def test_release_more_than_taken_raises():
    bm = BlockManager(2, 4)
    _, (block,), _ = alloc(bm, [1], 1)
    bm.release(block)
    with pytest.raises(RuntimeError):
        bm.release(block)


def test_invalid_sizes():
    with pytest.raises(ValueError):
        BlockManager(0, 4)
    with pytest.raises(ValueError):
        BlockManager(4, 0)
    assert BlockManager(4, 16).blocks_for(33) == 3
    assert BlockManager(4, 16).blocks_for(32) == 2
