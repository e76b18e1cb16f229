"""The paged KV cache's bookkeeping: which block holds what, who uses it, what can be reused.

Pure Python, no tensors: the runner owns the storage, this owns the block ids.

A block holds `block_size` consecutive tokens of one sequence. A *full* block is keyed by a hash
of its tokens chained with the hash of the block before it, so equal keys mean equal prefixes and
hence equal keys/values. Worked example, block_size 4, prompt [a b c d e f g h i]:
  block 0 = hash(None, [a b c d]), block 1 = hash(h0, [e f g h]), [i] is partial (no hash).
A later request starting [a b c d e f g h x ...] reuses blocks 0 and 1 (8 tokens not recomputed).

Each sequence's block table (position p lives in block table[p // block_size]) and the hashes of
its full blocks are kept here, by sequence id. The scheduler and the runner read a table with
`table(seq_id)`; only this class changes one (allocate, grow, drop_out_of_window, free).

Blocks whose reference count falls to zero keep their hash and stay reusable until evicted,
least-recently-used first. The storage is allocated lazily (torch.empty): a block first written is
memory the process keeps resident for good. So that a long run does not creep up to the whole KV
budget as it fills the prefix cache, a new block comes, in this order, from:
  1. the blocks freed without a hash (last freed first): resident, holding nothing;
  2. the idle cached blocks (LRU first), once they are as many as the most blocks ever in use at
     once: the cache may hold as much as the busiest moment needed, and no more;
  3. the never-used blocks;
  4. the idle cached blocks, whatever their number.
Resident memory then follows the peak load (at most about twice its blocks), not the run's length.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from typing import Sequence


def block_hash(parent: bytes | None, tokens: Sequence[int]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(parent or b"root")
    h.update(array("q", tokens).tobytes())
    return h.digest()


class NoFreeBlocks(Exception):
    pass


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        # Unhashed idle blocks: a stack whose bottom `_untouched` entries were never used.
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))
        self._untouched = num_blocks
        self.peak_used = 0  # the most blocks ever in use at once
        self._hash_of: dict[int, bytes] = {}
        self._by_hash: dict[bytes, int] = {}
        self._evictable: OrderedDict[int, None] = OrderedDict()  # ref 0, hashed; LRU first
        self.hits = 0  # tokens served from the cache
        self.queries = 0  # prompt tokens looked up
        self._tables: dict[int, list[int]] = {}  # by sequence id; -1 = a block dropped out of the window
        self._hashes: dict[int, list[bytes]] = {}  # by sequence id: of its full, computed blocks

    # ---- capacity ---------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        """Blocks a new allocation can take now (unhashed idle ones plus evictable cached ones)."""
        return len(self._free) + len(self._evictable)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def table(self, seq_id: int) -> list[int]:
        """A copy of the sequence's block table ([] when it holds no blocks)."""
        return list(self._tables.get(seq_id, ()))

    # ---- allocation ---------------------------------------------------------------------
    def _take(self) -> int:
        if len(self._free) > self._untouched:  # freed, unhashed: memory already resident
            block = self._free.pop()
        elif self._evictable and (len(self._evictable) >= self.peak_used or not self._free):
            block, _ = self._evictable.popitem(last=False)  # the least recently used cached block
            del self._by_hash[self._hash_of.pop(block)]
        elif self._free:  # new memory
            block = self._free.pop()
            self._untouched -= 1
        else:
            raise NoFreeBlocks
        self.ref_counts[block] = 1
        self._note_use()
        return block

    def _share(self, block: int) -> int:
        if self.ref_counts[block] == 0:
            del self._evictable[block]
            self._note_use()
        self.ref_counts[block] += 1
        return block

    def _note_use(self) -> None:
        self.peak_used = max(self.peak_used, self.num_used)

    def prefix_hashes(self, tokens: Sequence[int]) -> list[bytes]:
        """Chained hashes of every full block of `tokens`."""
        hashes: list[bytes] = []
        parent = None
        bs = self.block_size
        for i in range(len(tokens) // bs):
            parent = block_hash(parent, tokens[i * bs:(i + 1) * bs])
            hashes.append(parent)
        return hashes

    def cached_prefix(self, tokens: Sequence[int]) -> list[int]:
        """Blocks holding the longest cached prefix of `tokens`, leaving at least one token to
        compute (its logits are needed to sample)."""
        if not self.prefix_caching:
            return []
        found = []
        for h in self.prefix_hashes(tokens[: len(tokens) - 1]):
            block = self._by_hash.get(h)
            if block is None:
                break
            found.append(block)
        return found

    def allocate(self, seq_id: int, tokens: Sequence[int], max_new: int, use_cache: bool = True) -> int:
        """Blocks for a new sequence whose known tokens are `tokens`: its cached prefix plus room
        for up to `max_new` more positions. Returns the number of cached tokens. `use_cache`
        False: compute every position (a prompt being scored needs each one's logits); its
        blocks still enter the cache once full."""
        cached = self.cached_prefix(tokens) if use_cache else []
        num_cached = len(cached) * self.block_size
        num_tokens = num_cached + min(len(tokens) - num_cached, max_new)
        needed = self.blocks_for(num_tokens) - len(cached)
        # Cached blocks nobody uses are counted in num_free but are not free for this request.
        idle_cached = sum(1 for b in cached if self.ref_counts[b] == 0)
        if needed > self.num_free - idle_cached:
            raise NoFreeBlocks
        table = [self._share(b) for b in cached]
        table += [self._take() for _ in range(needed)]
        self._tables[seq_id] = table
        self._hashes[seq_id] = []
        if use_cache:  # a sequence that does not look is no miss
            self.queries += len(tokens)
            self.hits += num_cached
        return num_cached

    def grow(self, seq_id: int, num_tokens: int) -> None:
        """Extend the sequence's table to hold `num_tokens` positions (raises NoFreeBlocks)."""
        table = self._tables[seq_id]
        needed = self.blocks_for(num_tokens) - len(table)
        if needed > self.num_free:
            raise NoFreeBlocks
        table.extend(self._take() for _ in range(needed))

    def register_full_blocks(self, seq_id: int, tokens: Sequence[int], num_computed: int) -> None:
        """Make the full, computed blocks of a sequence findable by later requests. Each block
        is hashed once in the sequence's life: the hashes so far are kept with its table."""
        if not self.prefix_caching:
            return
        table, hashes = self._tables[seq_id], self._hashes[seq_id]
        bs = self.block_size
        for i in range(len(hashes), num_computed // bs):
            h = block_hash(hashes[-1] if hashes else None, tokens[i * bs:(i + 1) * bs])
            hashes.append(h)
            block = table[i]
            # Skip dropped (-1) blocks and contents some other block already holds.
            if block >= 0 and block not in self._hash_of and h not in self._by_hash:
                self._hash_of[block] = h
                self._by_hash[h] = block

    # ---- release ---------------------------------------------------------------------------
    def drop_out_of_window(self, seq_id: int, next_pos: int, window: int) -> None:
        """Release the blocks no future query of the sequence can see: with a sliding window, the
        query at `next_pos` sees positions > next_pos - window, so block b (positions
        b*bs .. (b+1)*bs-1) is dead once (b+1)*bs <= next_pos - window + 1. Dead entries become -1."""
        table = self._tables[seq_id]
        dead = max(0, (next_pos - window + 1) // self.block_size)
        for b in range(min(dead, len(table))):
            if table[b] >= 0:
                self.release(table[b])
                table[b] = -1

    def release(self, block: int) -> None:
        self.ref_counts[block] -= 1
        if self.ref_counts[block] < 0:
            raise RuntimeError(f"block {block} released more often than taken")
        if self.ref_counts[block] == 0:
            if block in self._hash_of:
                self._evictable[block] = None  # most recently used at the end
            else:
                self._free.append(block)

    def free(self, seq_id: int) -> None:
        """Release the sequence's blocks and forget its table (nothing to do if it has none)."""
        self._hashes.pop(seq_id, None)
        # Release the last blocks first so that, among equal candidates, a prefix's tail is
        # evicted before its head (the head is more likely to be shared again).
        for block in reversed(self._tables.pop(seq_id, [])):
            if block >= 0:
                self.release(block)

    def reset_prefix_cache(self) -> None:
        """Forget every cached block that no sequence uses."""
        for block in list(self._evictable):
            del self._by_hash[self._hash_of.pop(block)]
            self._free.append(block)
        self._evictable.clear()

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0
