"""The paged decode-attention kernel (kernels/cpu_attention.cpp), in every build this CPU runs:
against a float64 reference and against the gather + SDPA path it replaces, over GQA groups,
sliding windows, block sizes and lengths around the block and chunk edges; a sequence's output is
the same bits alone, in a batch and on any number of threads; and PagedKVCache uses it for
decode rows, falling back to the gather path where it cannot."""

import math

import pytest
import torch

from mistral_serve.model.attention import PagedKVCache, decode_attention, gather


class Paged:
    """A random cache (slots, KV, D) with sequences of the given lengths in scattered blocks, and
    their queries: what the kernel takes, and the same keys gathered for the references."""

    def __init__(self, lens, heads, kv, d, block_size, dtype, window=None, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.lens, self.bs, self.window = list(lens), block_size, window
        blocks = [-(-n // block_size) for n in lens]
        num_blocks = sum(blocks) + 3
        self.k = torch.randn(num_blocks * block_size, kv, d, generator=gen).to(dtype)
        self.v = torch.randn(num_blocks * block_size, kv, d, generator=gen).to(dtype)
        order = torch.randperm(num_blocks, generator=gen).tolist()
        self.block_tables, i = [], 0
        for n in blocks:
            self.block_tables.append(order[i:i + n])
            i += n
        width = max(blocks)
        self.tables = torch.tensor([t + [-1] * (width - len(t)) for t in self.block_tables], dtype=torch.int32)
        self.k_start = torch.tensor([0 if window is None else max(0, n - window) for n in lens])
        self.seq_len = torch.tensor(self.lens)
        # Larger queries than unit normals: sharper softmax, so a misplaced key shows.
        self.q = (2 * torch.randn(len(lens), heads, d, generator=gen)).to(dtype)

    def slots(self, b):
        pos = torch.arange(int(self.k_start[b]), self.lens[b])
        return torch.tensor(self.block_tables[b])[pos // self.bs] * self.bs + pos % self.bs

    def run(self, kernels, rows=None):
        rows = list(range(len(self.lens))) if rows is None else rows
        return kernels.paged_decode_attention(self.q[rows], self.k, self.v, self.tables[rows], self.k_start[rows],
                                              self.seq_len[rows], self.bs)

    def reference(self):
        """float64, one sequence and one head at a time."""
        b_, h_, d = self.q.shape
        g = h_ // self.k.shape[1]
        out = torch.empty(b_, h_, d, dtype=torch.float64)
        for b in range(b_):
            k, v = self.k[self.slots(b)].double(), self.v[self.slots(b)].double()
            for h in range(h_):
                w = torch.softmax(k[:, h // g] @ self.q[b, h].double() / math.sqrt(d), dim=0)
                out[b, h] = w @ v[:, h // g]
        return out

    def gathered(self):
        """attention.py's gather path: keys padded to the longest, SDPA."""
        reads = [self.slots(b) for b in range(len(self.lens))]
        longest = max(len(r) for r in reads)
        slots = torch.zeros(len(reads), longest, dtype=torch.long)
        visible = torch.zeros(len(reads), longest, dtype=torch.bool)
        for i, r in enumerate(reads):
            slots[i, :len(r)], visible[i, :len(r)] = r, True
        return decode_attention(self.q, gather(self.k, slots), gather(self.v, slots), visible)


# (lengths, query heads, kv heads, head_dim, block size, window): lengths 1 and around a block
# (15, 16, 17), a tile (L = 16 or 8 keys) and a chunk of 512 keys (511..513, 1025), long ones of
# several chunks; GQA groups 1, 2, 3, 4; block sizes 16 and others; windows shorter than the
# context.
CASES = [
    ((1, 15, 16, 17), 8, 2, 64, 16, None),
    ((1000, 3, 1200), 32, 8, 128, 16, None),
    ((511, 512, 513, 1025, 1), 4, 4, 64, 5, None),
    ((600, 1, 33, 1031), 32, 8, 128, 16, 100),
    ((257, 40, 513), 6, 2, 96, 32, 200),
    ((3, 40, 17), 4, 2, 16, 8, None),
    ((1100,), 8, 8, 32, 1, 1000),
]


def case_id(case):
    lens, h, kv, d, bs, window = case
    return f"G{h // kv}-D{d}-bs{bs}-w{window}-len{max(lens)}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_kernel_matches_float64_and_the_gather_path(kernels, case, dtype):
    lens, h, kv, d, bs, window = case
    p = Paged(lens, h, kv, d, bs, dtype, window, seed=len(lens) * 7 + d)
    out = p.run(kernels)
    assert out.dtype == dtype and out.shape == p.q.shape
    ref, stock = p.reference(), p.gathered()
    if dtype == torch.float32:
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out, stock, atol=1e-5, rtol=1e-5)
    else:
        # The output's bf16 rounding (2^-8 relative) dominates; p is rounded to bf16 for p.v as
        # PyTorch's own CPU kernel rounds it. Outputs here are within about 2 in magnitude.
        err, stock_err = (out.double() - ref).abs().max().item(), (stock.double() - ref).abs().max().item()
        assert err <= 1.5e-2 and err <= 2 * stock_err + 2e-3, (err, stock_err)
        torch.testing.assert_close(out.float(), stock.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_sequences_output_is_the_same_bits_alone_in_a_batch_and_on_any_thread_count(kernels, dtype):
    p = Paged((1500, 7, 300, 129, 1, 2049), 32, 8, 128, 16, dtype, seed=5)
    batch = p.run(kernels)
    for b in range(len(p.lens)):
        assert torch.equal(p.run(kernels, [b]), batch[b:b + 1]), b
    assert torch.equal(p.run(kernels, [5, 0, 3]), batch[[5, 0, 3]])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(p.run(kernels), batch)
    finally:
        torch.set_num_threads(threads)


def test_kernel_reads_q_rows_with_a_stride(kernels):
    """The model hands q over as a view into its fused qkv output: rows (H + 2 KV) D apart."""
    p = Paged((40, 300), 8, 2, 64, 16, torch.float32, seed=2)
    wide = torch.randn(2, 12, 64)
    wide[:, :8] = p.q
    assert torch.equal(kernels.paged_decode_attention(wide[:, :8], p.k, p.v, p.tables, p.k_start, p.seq_len, 16),
                       p.run(kernels))


def test_kernel_rejects_what_it_cannot_take(kernels):
    p = Paged((20,), 4, 2, 64, 16, torch.float32)
    call = kernels.paged_decode_attention
    with pytest.raises(RuntimeError, match="multiple of 16"):
        call(p.q[..., :40], p.k[..., :40], p.v[..., :40], p.tables, p.k_start, p.seq_len, 16)
    with pytest.raises(RuntimeError, match="dtype"):
        call(p.q.bfloat16(), p.k, p.v, p.tables, p.k_start, p.seq_len, 16)
    with pytest.raises(RuntimeError, match="block table"):  # keys past the table's blocks
        call(p.q, p.k, p.v, p.tables, p.k_start, p.seq_len + 16, 16)
    bad = p.tables.clone()
    bad[0, 1] = -1  # a dropped (or padding) block where keys are read
    with pytest.raises(RuntimeError, match="not in the cache"):
        call(p.q, p.k, p.v, bad, p.k_start, p.seq_len, 16)


def fill_cache(kernels, head_dim=64, dtype=torch.float32, window=None):
    torch.manual_seed(3)
    cache = PagedKVCache(2, 40, 8, 2, head_dim, window, dtype, torch.device("cpu"), kernels=kernels)
    cache.k.normal_()
    cache.v.normal_()
    return cache


def step(cache, seqs, layer=1, seed=0):
    """One step of (table, start, n) sequences with random q, k, v -> the attention output."""
    gen = torch.Generator().manual_seed(seed)
    n = sum(s[2] for s in seqs)
    d = cache.k.shape[-1]
    q = torch.randn(n, 8, d, generator=gen).to(cache.k.dtype)
    k, v = (torch.randn(n, 2, d, generator=gen).to(cache.k.dtype) for _ in range(2))
    cache.begin_step(seqs)
    return cache.attend(layer, q, k, v)


@pytest.mark.parametrize("window", [None, 20])
def test_paged_cache_uses_the_kernel_for_decode_rows_and_agrees_with_the_gather_path(kernels, window):
    # Decodes around a prompt chunk in one flat batch, the kernel's cache against a cache with
    # none (the gather path), on the same contents. Table 0 has a dropped block (-1) before the
    # window, as the block manager leaves it.
    seqs = [([-1 if window else 5, 6, 7, 8, 9], 33, 1), ([1, 2, 3], 10, 12), ([11, 12, 13], 15, 1), ([20], 0, 1)]
    with_kernel, without = fill_cache(kernels, window=window), fill_cache(None, window=window)
    calls = []
    real = kernels.paged_decode_attention

    class Spy:
        def paged_decode_attention(self, *args):
            calls.append(args[0].shape)
            return real(*args)

    with_kernel.kernels = Spy()
    out = step(with_kernel, seqs)
    assert calls == [(3, 8, 64)]  # the three decode rows, together
    torch.testing.assert_close(out, step(without, seqs), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(with_kernel.k, without.k, atol=0, rtol=0)  # the same writes
    # All rows decoding: the whole step in one call.
    seqs = [(t, start + n, 1) for t, start, n in seqs]
    out = step(with_kernel, seqs, seed=1)
    assert len(calls) == 2
    torch.testing.assert_close(out, step(without, seqs, seed=1), atol=1e-5, rtol=1e-5)


def test_paged_cache_falls_back_to_the_gather_path_where_the_kernel_cannot_go(kernels):
    assert fill_cache(kernels, head_dim=24).kernels is None  # head_dim not a multiple of 16
    assert PagedKVCache(1, 4, 8, 2, 64, None, torch.float16, torch.device("cpu"), kernels=kernels).kernels is None
    odd, plain = fill_cache(kernels, head_dim=24), fill_cache(None, head_dim=24)
    seqs = [([0, 1], 9, 1), ([2, 3, 4], 20, 1)]
    torch.testing.assert_close(step(odd, seqs), step(plain, seqs), atol=0, rtol=0)
