"""Attention backends: where the keys and values of a step come from and go to.

The transformer hands each layer's projected q, k, v for the N tokens of a step to a backend;
the backend stores k/v in whatever cache it owns and returns the attention output. The model thus
knows nothing of requests, and the engine can swap a paged cache in without touching the model.

Tokens of a step are laid out flat: sequence 0's new tokens, then sequence 1's, and so on.

Sliding window, worked example (window w=3): the token at position 5 attends positions 3, 4, 5,
i.e. key j is visible to query i when i - w < j <= i. This matches the reference
(`kv_idx > q_idx - sliding_window`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


class AttentionBackend(Protocol):
    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q (N, H, D), k and v (N, KV, D) for this step's tokens -> (N, H, D)."""
        ...


def window_mask(q_start: int, n_q: int, n_k: int, k_start: int, window: int | None,
                device: torch.device) -> Tensor:
    """Boolean (n_q, n_k) mask, True = visible, for queries at positions q_start.. and keys at
    k_start.. (causal, and within the window if there is one)."""
    q_pos = torch.arange(q_start, q_start + n_q, device=device)[:, None]
    k_pos = torch.arange(k_start, k_start + n_k, device=device)[None, :]
    visible = k_pos <= q_pos
    if window is not None:
        visible &= k_pos > q_pos - window
    return visible


def sdpa(q: Tensor, k: Tensor, v: Tensor, q_start: int, k_start: int,
         window: int | None) -> Tensor:
    """One sequence: q (n_q, H, D) at positions q_start..; k, v (n_k, KV, D) at k_start..
    -> (n_q, H, D). Keys must end where queries end (the cache already holds this step)."""
    n_q, n_k = q.shape[0], k.shape[0]
    if n_q == 1 and (window is None or n_k <= window):
        return decode_attention(q, k[None], v[None], None)
    # (heads, tokens, D) for scaled_dot_product_attention. GQA: k/v heads are repeated rather
    # than passed with enable_gqa, which PyTorch's CPU kernels only take on the slow math path.
    groups = q.shape[1] // k.shape[1]
    qh = q.transpose(0, 1)
    kh, vh = (t.transpose(0, 1).repeat_interleave(groups, dim=0) if groups > 1 else t.transpose(0, 1)
              for t in (k, v))
    if q_start == k_start and (window is None or n_q <= window):
        out = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)
    else:
        mask = window_mask(q_start, n_q, n_k, k_start, window, q.device)
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    return out.transpose(0, 1)


def decode_attention(q: Tensor, k: Tensor, v: Tensor, visible: Tensor | None) -> Tensor:
    """One new token for each of B sequences: q (B, H, D); k, v (B, L, KV, D), each sequence's
    visible keys padded to L; visible (B, L) bool, True for real keys (None: no padding)
    -> (B, H, D).

    The G = H / KV query heads sharing a kv head are laid out as G queries of that head, so one
    call covers the batch without repeating k/v, and no causal mask is needed: every key in
    the cache is at or before the new token."""
    b, h, d = q.shape
    kv = k.shape[2]
    qg = q.view(b, kv, h // kv, d)  # (B, KV, G, D)
    mask = None if visible is None else visible[:, None, None, :]  # (B, 1, 1, L)
    out = F.scaled_dot_product_attention(qg, k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.reshape(b, h, d)


def split_lengths(total: int, seq_lens: Sequence[int]) -> list[int]:
    if sum(seq_lens) != total:
        raise ValueError(f"sequence lengths {list(seq_lens)} do not add up to {total} tokens")
    return list(seq_lens)


class NoCache:
    """Full forward without a cache: every sequence starts at position 0."""

    def __init__(self, seq_lens: Sequence[int], window: int | None) -> None:
        self.seq_lens = list(seq_lens)
        self.window = window

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        lens = split_lengths(q.shape[0], self.seq_lens)
        outs = [sdpa(qs, ks, vs, 0, 0, self.window)
                for qs, ks, vs in zip(q.split(lens), k.split(lens), v.split(lens))]
        return torch.cat(outs) if len(outs) > 1 else outs[0]


def paged_kernel_fits(dtype: torch.dtype, device: torch.device, head_dim: int) -> bool:
    """Whether kernels/cpu_attention.cpp's paged decode attention takes a cache of this kind."""
    return device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and head_dim % 16 == 0


@dataclass(slots=True)
class DecodePlan:
    """This step's decode rows (one new token each) and what they read.

    For the kernel: tables (B, max_blocks) int32, k_start and seq_len (B,) int64, sequence b
    attending positions k_start[b] .. seq_len[b] - 1 in place. For the gather path (no kernel,
    or a shape it does not take): slots (B, L) long, each sequence's slots padded to the longest
    (padding reads slot 0), and visible (B, L) bool, None when nothing is padded; made on first
    use from `reads` (table, k_start, end) per sequence.
    """

    rows: Tensor
    reads: list[tuple[Sequence[int], int, int]]
    block_size: int
    device: torch.device
    tables: Tensor | None = None
    k_start: Tensor | None = None
    seq_len: Tensor | None = None
    _gather: tuple[Tensor, Tensor | None] | None = None

    def with_kernel_tensors(self) -> "DecodePlan":
        bs = self.block_size
        width = max(-(-end // bs) for _, _, end in self.reads)
        # Blocks up to each sequence's last position (a table may hold blocks allocated ahead),
        # padded with -1, which the kernel refuses to read: a short table fails, never reads block 0.
        self.tables = torch.tensor([list(t[:width]) + [-1] * (width - min(len(t), width)) for t, _, _ in self.reads],
                                   dtype=torch.int32)
        self.k_start = torch.tensor([k for _, k, _ in self.reads], dtype=torch.long)
        self.seq_len = torch.tensor([end for _, _, end in self.reads], dtype=torch.long)
        return self

    def gather_plan(self) -> tuple[Tensor, Tensor | None]:
        if self._gather is None:
            reads = [slots_of(t, k, end, self.block_size) for t, k, end in self.reads]
            longest = max(len(r) for r in reads)
            slots = torch.zeros(len(reads), longest, dtype=torch.long)  # padding reads slot 0
            visible = torch.zeros(len(reads), longest, dtype=torch.bool)
            for i, r in enumerate(reads):
                slots[i, :len(r)] = r
                visible[i, :len(r)] = True
            mask = None if bool(visible.all()) else visible.to(self.device)
            self._gather = (slots.to(self.device), mask)
        return self._gather


def slots_of(table: Sequence[int], start: int, end: int, block_size: int) -> Tensor:
    """The slots of positions start .. end - 1: table[p // bs] * bs + p % bs."""
    pos = torch.arange(start, end)
    blocks = torch.tensor(table, dtype=torch.long)[pos // block_size]
    return blocks * block_size + pos % block_size


class PagedKVCache:
    """Keys and values in fixed-size blocks: k/v (layers, num_blocks * block_size, KV, D).

    A sequence's block table maps its position p to slot table[p // bs] * bs + p % bs. Before
    each forward, `begin_step` gets (block table, first new position, number of new tokens) for
    every sequence of the flat batch. Storage is allocated with torch.empty: a slot is always
    written before any query can see it, and on CPUs untouched pages cost no memory.

    Decode rows (one new token) are attended together: by `kernels.paged_decode_attention`
    (kernels/cpu_attention.cpp), which reads each sequence's blocks in place, when a compiled
    module is given and takes the cache (CPU, float32 or bfloat16, head_dim a multiple of 16);
    else by gathering their keys and values into one padded batch for SDPA. Prompt chunks (several
    new tokens) always gather, one sequence at a time.
    """

    def __init__(self, n_layers: int, num_blocks: int, block_size: int, n_kv_heads: int,
                 head_dim: int, window: int | None, dtype: torch.dtype, device: torch.device,
                 kernels: ModuleType | None = None) -> None:
        shape = (n_layers, num_blocks * block_size, n_kv_heads, head_dim)
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)
        self.block_size = block_size
        self.window = window
        self.device = device
        # None: the gather path for decode rows too (`--cpu-kernels stock`, or a cache it cannot take).
        self.kernels = kernels if paged_kernel_fits(dtype, device, head_dim) else None
        self._write: Tensor | None = None
        # Prompt chunks: (row offset, start, n, k_start, read slots).
        self._seqs: list[tuple[int, int, int, int, Tensor]] = []
        self._decode: DecodePlan | None = None
        self._all_decode = False

    def _slots(self, table: Sequence[int], start: int, end: int) -> Tensor:
        return slots_of(table, start, end, self.block_size)

    def begin_step(self, seqs: Sequence[tuple[Sequence[int], int, int]]) -> None:
        """Plan the step: where each new token's k/v goes, and which slots each query reads.
        Per sequence, never per token: a decode row's write slot is one lookup in its table."""
        bs = self.block_size
        writes: list[Tensor] = []
        pending: list[int] = []  # decode rows' write slots not yet in `writes`
        self._seqs = []
        decode_rows, decode_reads = [], []
        offset = 0
        for table, start, n in seqs:
            end = start + n
            k_start = 0 if self.window is None else max(0, start - self.window + 1)
            if n == 1:
                pending.append(table[start // bs] * bs + start % bs)
                decode_rows.append(offset)
                decode_reads.append((table, k_start, end))
            else:
                if pending:
                    writes.append(torch.tensor(pending, dtype=torch.long))
                    pending = []
                read = self._slots(table, k_start, end)
                writes.append(read[start - k_start:])
                self._seqs.append((offset, start, n, k_start, read.to(self.device)))
            offset += n
        if pending:
            writes.append(torch.tensor(pending, dtype=torch.long))
        self._write = torch.cat(writes).to(self.device)
        self._decode = None
        if decode_rows:
            plan = DecodePlan(torch.tensor(decode_rows, device=self.device), decode_reads, bs, self.device)
            self._decode = plan.with_kernel_tensors() if self.kernels is not None else plan
        self._all_decode = len(decode_rows) == offset

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        k_cache, v_cache = self.k[layer], self.v[layer]  # (slots, KV, D)
        k_cache.index_copy_(0, self._write, k)
        v_cache.index_copy_(0, self._write, v)
        if self._all_decode:
            return self._attend_decodes(q, k_cache, v_cache)
        out = torch.empty_like(q)
        if self._decode is not None:
            out[self._decode.rows] = self._attend_decodes(q[self._decode.rows], k_cache, v_cache)
        for offset, start, n, k_start, read in self._seqs:
            out[offset:offset + n] = sdpa(q[offset:offset + n], gather(k_cache, read), gather(v_cache, read), start,
                                          k_start, self.window)
        return out

    def _attend_decodes(self, q: Tensor, k_cache: Tensor, v_cache: Tensor) -> Tensor:
        """q (B, H, D), one row per decode -> (B, H, D)."""
        plan = self._decode
        if plan.tables is not None and q.dtype == k_cache.dtype:
            return self.kernels.paged_decode_attention(q, k_cache, v_cache, plan.tables, plan.k_start, plan.seq_len,
                                                       self.block_size)
        slots, mask = plan.gather_plan()
        return decode_attention(q, gather(k_cache, slots), gather(v_cache, slots), mask)


def gather(cache: Tensor, slots: Tensor) -> Tensor:
    """cache (slots, KV, D), slots (...) long -> (..., KV, D). index_select, not cache[slots]:
    advanced indexing took 3-7x longer on CPU for the same copy (measured)."""
    return cache.index_select(0, slots.reshape(-1)).view(*slots.shape, *cache.shape[1:])
