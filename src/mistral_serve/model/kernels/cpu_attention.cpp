// Decode attention over the paged KV cache: one new token for each of B sequences, each reading
// its keys and values where they lie in the cache's blocks.
//
// Why: attention.py's fallback gathers (index_select) every visible key and value of every
// sequence into a padded (B, L, KV, D) copy, each step and each layer, before SDPA reads it again:
// at an 8k-token context the copy cost more than the arithmetic. Here each key and value vector
// is read once, straight from its block.
//
// How (flash-decoding): the keys of each sequence are cut into chunks of CHUNK positions counted
// from its first visible key. A work item of at::parallel_for is one chunk for the kv heads of a
// group (all of them unless the threads would get too few items); it walks its keys in tiles of
// L, and for each tile and kv head computes the scores of the G = H / KV query heads sharing it
// (each key read once for all G), updates each query head's running maximum m and sum l of
// exp(score - m) (rescaling what it has summed when m grows: online softmax), and adds
// exp(score - m) v to its output, all in float32. A sequence of one chunk is then done
// (out = acc / l); longer ones are merged after, chunk by chunk in a fixed order (the log-sum-exp
// merge: each chunk's l and acc scaled by exp(m_c - max m)). The chunks, tiles and the order of
// every sum depend on the sequence alone, so its output is the same bits whatever the batch
// beside it and however many threads run.
//
// Memory order: one kv head's keys are D values every KV D of the cache; read head by head that
// pattern got a quarter of the sequential read rate here (6 against 25 GB/s, one thread). So an
// item takes all kv heads of its keys: it reads keys slot by slot (a slot's rows side by side),
// prefetches each tile's keys and values line by line in slot order a tile ahead, and uses a
// tile's values right after its scores, while they are still in L2. Measured on a 2-core Zen 4
// (bench/context_bench.py, docs): a plain read of the same bytes, blocks in random order, gets
// 21-24 GB/s on two threads (36 sequential); this kernel 17-19, where the gather path's copy
// and SDPA reached about 3.
//
// Where the CPU has AVX512-BF16 and the cache is bf16, q.k and p.v take vdpbf16ps (two bf16
// products into each float32 lane; p rounded to bf16 for p.v, as PyTorch's CPU flash attention
// rounds it); elsewhere the values are widened to float32 and meet in FMAs.
#include <memory>

#include "common.h"

namespace mskernels {
namespace {

constexpr int64_t CHUNK = 512;  // key positions per chunk (a multiple of L; 512 ran 1.2x faster than 128 at 8k)

#if defined(__AVX512BF16__) && defined(MSK_WIDE)
#define MSK_ATTN_BF16 1
#endif

// What every work item shares. Element strides: q rows of `q_row` (query heads D apart), cache
// slots `slot` apart (kv heads D apart), output rows H * D.
struct Problem {
  int64_t B, H, KV, G, D, block_size, slot, q_row;
  float scale;
  const int32_t* tables;  // (B, max_blocks)
  int64_t max_blocks;
  const int64_t *k_start, *seq_len;
};

// One work item: the keys p0 .. p1 - 1 (one chunk) of sequence b for the NH kv heads h0 ..
// h0 + NH - 1, whose rows lie side by side in each slot; R = NH G query heads.
struct Item {
  int64_t b, h0, NH, p0, p1;
};

// Memory that is written before it is read: allocated, never zeroed (clearing scratch vectors
// was a third of a short context's 13 us call).
template <typename T>
struct Buffer {
  std::unique_ptr<T[]> mem;
  explicit Buffer(int64_t n) : mem(new T[n]) {}
  T* data() { return mem.get(); }
  T& operator[](int64_t i) { return mem[i]; }
};

// An item's working memory, for R query heads ("rows"): the running outputs acc (R x D; in the
// bf16 path's column order until `finish`), m and l; one tile's dot products and probabilities
// for the G rows of one kv head.
struct Scratch {
  Buffer<float> acc, m, l;
  Buffer<int64_t> slots;  // of the item's keys
  Buffer<float> part;  // R x L dot-product vectors (L floats each) awaiting fsum_each
  Buffer<float> p;  // G x L probabilities of one tile
  Buffer<float> qf, kf;  // float32 path: the item's queries (R x D), one key widened
#ifdef MSK_ATTN_BF16
  Buffer<uint32_t> pairs;  // p as bf16 pairs (keys 2j, 2j+1), G x L / 2
#endif
  explicit Scratch(int64_t R, int64_t G, int64_t D)
      : acc(R * D), m(R), l(R), slots(CHUNK), part(R * L * L), p(G * L), qf(R * D), kf(D)
#ifdef MSK_ATTN_BF16
      , pairs(G * L / 2)
#endif
  {}
};

// The output, in q's dtype: float32, or bfloat16 rounded to nearest even (as Tensor.to rounds),
// a NaN kept a NaN.
inline void store_out(float* p, F32 v) { fstore(p, v); }
inline void store_out(at::BFloat16* p, F32 v) {
  const I32 b = as_int(v), lsb = and_(shr32<16>(b), iset32(1));
  store_u16(p, where_nan(v, shr32<16>(add32(b, add32(lsb, iset32(0x7FFF)))), iset32(0x7FC0)));
}

// The cache slots of positions p0 .. p1 - 1 of sequence b, one division per block.
void chunk_slots(const Problem& pr, int64_t b, int64_t p0, int64_t p1, int64_t* out) {
  const int32_t* table = pr.tables + b * pr.max_blocks;
  for (int64_t p = p0; p < p1;) {
    const int64_t block = p / pr.block_size, off = p - block * pr.block_size;
    const int64_t n = std::min(pr.block_size - off, p1 - p), base = (int64_t)table[block] * pr.block_size + off;
    for (int64_t j = 0; j < n; ++j) *out++ = base + j;
    p += n;
  }
}

// Prefetches (into L2) the rows of a run of slots line by line, in slot order: `next(lines)`
// issues the next `lines` of them.
struct Stream {
  const char* base;  // the item's first kv head in slot 0
  int64_t stride, row;  // bytes between slots; bytes of the item's heads in one slot
  const int64_t* slots;
  int64_t i, n, off = 0;  // next slot (index into slots) and byte within its row; slots in all
  void next(int64_t lines) {
    while (lines > 0 && i < n) {
      const char* p = base + slots[i] * stride;
      const int64_t end = std::min(row, off + 64 * lines);
      lines -= (end - off + 63) / 64;
      for (; off < end; off += 64) _mm_prefetch(p + off, _MM_HINT_T1);
      if (off >= row) off = 0, ++i;
    }
  }
};

// L vectors stored one after another -> lane i = the sum of vector i (simd.h's fsum_each).
inline F32 sum_each(const float* v) {
  F32 x[L];
  for (int i = 0; i < L; ++i) x[i] = fload(v + i * L);
  return fsum_each(x);
}

// The online softmax for the G rows of kv head hl (rows r0 ..) over one tile of nt keys, whose
// dot products are in part: p = exp(scale q.k - m) into s.p (0 past nt), m and l updated; where
// m grows, the row's l and output so far are scaled by exp(m_old - m_new). Then pv(r0) adds
// p v to the rows' outputs.
template <typename PV>
inline void softmax_tile(const Problem& pr, Scratch& s, int64_t r0, int64_t nt, const float* part, const PV& pv) {
  const F32 scale = fset(pr.scale);
  for (int64_t g = 0; g < pr.G; ++g) {
    float* p = s.p.data() + g * L;
    fstore(p, fmul(sum_each(part + g * L * L), scale));
    for (int64_t i = nt; i < L; ++i) p[i] = -INFINITY;
    const float tile_max = fmaxof(fload(p)), m = s.m[r0 + g];
    if (tile_max > m) {
      if (m != -INFINITY) {  // else nothing summed yet: l and the output are still 0
        const float alpha = std::exp(m - tile_max);
        s.l[r0 + g] *= alpha;
        float* acc = s.acc.data() + (r0 + g) * pr.D;
        for (int64_t d = 0; d < pr.D; d += L) fstore(acc + d, fmul(fload(acc + d), fset(alpha)));
      }
      s.m[r0 + g] = tile_max;
    }
    const F32 e = fexp(fsub(fload(p), fset(s.m[r0 + g])));
    fstore(p, e);
    for (int64_t i = nt; i < L; ++i) p[i] = 0.f;
    s.l[r0 + g] += fsum(fload(p));
  }
  pv(r0);
}

// The item's tiles. Keys are read slot by slot, every kv head of the item at once (the order the
// memory serves fastest): dots(hl, key, i) puts kv head hl's G dot products with one key row
// into s.part; then for each kv head the softmax and pv(hl, r0, t, nt) over the tile's values,
// prefetched a tile ahead in slot order.
template <typename T, typename Dots, typename PV>
void tiles(const Problem& pr, const Item& it, Scratch& s, const T* k, const T* v, const Dots& dots, const PV& pv) {
  const int64_t n = it.p1 - it.p0, G = pr.G, R = it.NH * G;
  for (int64_t r = 0; r < R; ++r) {
    s.m[r] = -INFINITY;
    s.l[r] = 0.f;
  }
  for (int64_t i = 0; i < R * pr.D; i += L) fstore(s.acc.data() + i, fzero());
  const int64_t row = it.NH * pr.D * (int64_t)sizeof(T), stride = pr.slot * (int64_t)sizeof(T);
  const int64_t lines = (row + 63) / 64;  // per slot
  Stream keys{(const char*)(k + it.h0 * pr.D), stride, row, s.slots.data(), 0, std::min<int64_t>(L, n)};
  Stream values{(const char*)(v + it.h0 * pr.D), stride, row, s.slots.data(), 0, std::min<int64_t>(L, n)};
  keys.next(keys.n * lines);  // the first tile at once, then each a tile ahead
  values.next(values.n * lines);
  keys.n = values.n = n;
  for (int64_t t = 0; t < n; t += L) {
    const int64_t nt = std::min<int64_t>(L, n - t);
    for (int64_t i = 0; i < nt; ++i) {
      keys.next(lines);
      values.next(lines);
      const T* key = k + s.slots[t + i] * pr.slot + it.h0 * pr.D;
      for (int64_t hl = 0; hl < it.NH; ++hl) dots(hl, key + hl * pr.D, i);
    }
    for (int64_t hl = 0; hl < it.NH; ++hl) {
      float* part = s.part.data() + hl * G * L * L;
      for (int64_t g = 0; g < G; ++g)
        for (int64_t i = nt; i < L; ++i) fstore(part + (g * L + i) * L, fzero());
      softmax_tile(pr, s, hl * G, nt, part, [&](int64_t r0) { pv(hl, r0, t, nt); });
    }
  }
}

// acc (GT rows from r0) += sum_i p[g][i] v_i over a tile's nt keys, columns d0 .. d0 + DV L.
template <int GT, int DV, typename T>
void pv_f32(const Problem& pr, Scratch& s, const T* vh, int64_t t, int64_t nt, int64_t g0, int64_t r0, int64_t d0) {
  F32 acc[GT][DV];
  for (int g = 0; g < GT; ++g)
    for (int j = 0; j < DV; ++j) acc[g][j] = fload(s.acc.data() + (r0 + g) * pr.D + d0 + j * L);
  for (int64_t i = 0; i < nt; ++i) {
    const T* vp = vh + s.slots[t + i] * pr.slot + d0;
    F32 x[DV];
    for (int j = 0; j < DV; ++j) x[j] = load(vp + j * L);
    for (int g = 0; g < GT; ++g) {
      const F32 w = fset(s.p[(g0 + g) * L + i]);
      for (int j = 0; j < DV; ++j) acc[g][j] = fmadd(w, x[j], acc[g][j]);
    }
  }
  for (int g = 0; g < GT; ++g)
    for (int j = 0; j < DV; ++j) fstore(s.acc.data() + (r0 + g) * pr.D + d0 + j * L, acc[g][j]);
}

// GT rows in column slabs of DV vectors (then single vectors). The slabs do not change the
// numbers: each output is summed over the keys in order all the same.
template <int GT, typename T>
void pv_rows_f32(const Problem& pr, Scratch& s, const T* vh, int64_t t, int64_t nt, int64_t g0, int64_t r0) {
  constexpr int DV = WIDE ? 4 : 2;  // GT x DV accumulators in registers
  int64_t d = 0;
  for (; d + DV * L <= pr.D; d += DV * L) pv_f32<GT, DV>(pr, s, vh, t, nt, g0, r0, d);
  for (; d < pr.D; d += L) pv_f32<GT, 1>(pr, s, vh, t, nt, g0, r0, d);
}

template <typename T>
void item_f32(const Problem& pr, const Item& it, Scratch& s, const T* q, const T* k, const T* v) {
  const int64_t D = pr.D, G = pr.G;
  for (int64_t i = 0; i < it.NH * G * D; i += L) fstore(s.qf.data() + i, load(q + i));
  auto dots = [&](int64_t hl, const T* key, int64_t i) {
    const float* kf;
    if constexpr (std::is_same_v<T, float>) {
      kf = key;
    } else {  // widened once for all G heads
      for (int64_t d = 0; d < D; d += L) fstore(s.kf.data() + d, load(key + d));
      kf = s.kf.data();
    }
    float* part = s.part.data() + hl * G * L * L;
    for (int64_t g = 0; g < G; ++g) {
      const float* qg = s.qf.data() + (hl * G + g) * D;
      F32 acc = fzero();
      for (int64_t d = 0; d < D; d += L) acc = fmadd(fload(qg + d), fload(kf + d), acc);
      fstore(part + (g * L + i) * L, acc);
    }
  };
  auto pv = [&](int64_t hl, int64_t r0, int64_t t, int64_t nt) {
    const T* vh = v + (it.h0 + hl) * D;
    int64_t g = 0;
    for (; g + 4 <= G; g += 4) pv_rows_f32<4>(pr, s, vh, t, nt, g, r0 + g);
    for (; g + 2 <= G; g += 2) pv_rows_f32<2>(pr, s, vh, t, nt, g, r0 + g);
    for (; g < G; ++g) pv_rows_f32<1>(pr, s, vh, t, nt, g, r0 + g);
  };
  tiles(pr, it, s, k, v, dots, pv);
}

#ifdef MSK_ATTN_BF16
inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }

// GT queries (rows of D from qg, read from L1 as the instructions' memory operands) against one
// key row of DR vectors of 32 bf16, into part (row g's vector i).
template <int GT, int DR>
inline void dots_bf16(const at::BFloat16* qg, int64_t D, const at::BFloat16* key, float* part, int64_t i) {
  __m512bh kv[DR];
  for (int r = 0; r < DR; ++r) kv[r] = as_bh(iload(key + 32 * r));
  F32 acc[GT];
  for (int g = 0; g < GT; ++g) acc[g] = fzero();
  for (int r = 0; r < DR; ++r)
    for (int g = 0; g < GT; ++g) acc[g] = _mm512_dpbf16_ps(acc[g], kv[r], as_bh(iload(qg + g * D + 32 * r)));
  for (int g = 0; g < GT; ++g) fstore(part + (g * L + i) * L, acc[g]);
}

// acc (GT rows from r0) += p v over a tile's nt keys, 32 S columns from column 32 c0, keys two
// at a time: the 16-bit interleave of v_i and v_i+1 meets the bf16 pair (p_i, p_i+1) in one
// vdpbf16ps. Its output lanes are out of column order (unpacklo: columns 8k..8k+3 of each
// 128-bit lane k, unpackhi: 8k+4..8k+7); acc keeps them so (lo then hi, 16 floats each, per 32
// columns) until `unpermute`.
template <int GT, int S>
void pv_bf16(const Problem& pr, Scratch& s, const at::BFloat16* vh, int64_t t, int64_t nt, int64_t g0, int64_t r0,
             int64_t c0) {
  F32 lo[GT][S], hi[GT][S];
  for (int g = 0; g < GT; ++g)
    for (int j = 0; j < S; ++j) {
      const float* a = s.acc.data() + (r0 + g) * pr.D + 32 * (c0 + j);
      lo[g][j] = fload(a);
      hi[g][j] = fload(a + 16);
    }
  for (int64_t i = 0; i < nt; i += 2) {
    const at::BFloat16* a = vh + s.slots[t + i] * pr.slot + 32 * c0;
    const at::BFloat16* b = i + 1 < nt ? vh + s.slots[t + i + 1] * pr.slot + 32 * c0 : a;  // its p is 0
    I32 xl[S], xh[S];
    for (int j = 0; j < S; ++j) {
      const I32 x = iload(a + 32 * j), y = iload(b + 32 * j);
      xl[j] = unpacklo16(x, y);
      xh[j] = unpackhi16(x, y);
    }
    for (int g = 0; g < GT; ++g) {
      const __m512bh w = as_bh(_mm512_set1_epi32((int)s.pairs[(g0 + g) * (L / 2) + i / 2]));
      for (int j = 0; j < S; ++j) {
        lo[g][j] = _mm512_dpbf16_ps(lo[g][j], w, as_bh(xl[j]));
        hi[g][j] = _mm512_dpbf16_ps(hi[g][j], w, as_bh(xh[j]));
      }
    }
  }
  for (int g = 0; g < GT; ++g)
    for (int j = 0; j < S; ++j) {
      float* a = s.acc.data() + (r0 + g) * pr.D + 32 * (c0 + j);
      fstore(a, lo[g][j]);
      fstore(a + 16, hi[g][j]);
    }
}

template <int GT>
void pv_rows_bf16(const Problem& pr, Scratch& s, const at::BFloat16* vh, int64_t t, int64_t nt, int64_t g0,
                  int64_t r0) {
  constexpr int S = GT >= 4 ? 2 : 4;  // GT x S x 2 accumulators: 16 or 8
  const int64_t C = pr.D / 32;
  int64_t c = 0;
  for (; c + S <= C; c += S) pv_bf16<GT, S>(pr, s, vh, t, nt, g0, r0, c);
  for (; c < C; ++c) pv_bf16<GT, 1>(pr, s, vh, t, nt, g0, r0, c);
}

// Rows of acc in pv_bf16's column order -> column order.
void unpermute(Scratch& s, int64_t R, int64_t D) {
  alignas(64) float t[32];
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < D; c += 32) {
      float* a = s.acc.data() + r * D + c;
      std::copy(a, a + 32, t);
      for (int k = 0; k < 4; ++k)
        for (int j = 0; j < 4; ++j) {
          a[8 * k + j] = t[4 * k + j];
          a[8 * k + 4 + j] = t[16 + 4 * k + j];
        }
    }
}

// bf16 queries against bf16 keys with vdpbf16ps; DR vectors of 32 bf16 per row (0: D / 32, known
// only at run time).
template <int DR>
void item_bf16(const Problem& pr, const Item& it, Scratch& s, const at::BFloat16* q, const at::BFloat16* k,
               const at::BFloat16* v) {
  const int64_t G = pr.G, D = pr.D, R = D / 32;
  auto dots = [&](int64_t hl, const at::BFloat16* key, int64_t i) {
    const at::BFloat16* qh = q + hl * G * D;
    float* part = s.part.data() + hl * G * L * L;
    if constexpr (DR > 0) {
      int64_t g = 0;
      for (; g + 4 <= G; g += 4) dots_bf16<4, DR>(qh + g * D, D, key, part + g * L * L, i);
      for (; g + 2 <= G; g += 2) dots_bf16<2, DR>(qh + g * D, D, key, part + g * L * L, i);
      for (; g < G; ++g) dots_bf16<1, DR>(qh + g * D, D, key, part + g * L * L, i);
    } else {
      for (int64_t g = 0; g < G; ++g) {
        F32 acc = fzero();
        for (int64_t r = 0; r < R; ++r)
          acc = _mm512_dpbf16_ps(acc, as_bh(iload(key + 32 * r)), as_bh(iload(qh + g * D + 32 * r)));
        fstore(part + (g * L + i) * L, acc);
      }
    }
  };
  auto pv = [&](int64_t hl, int64_t r0, int64_t t, int64_t nt) {
    for (int64_t g = 0; g < G; ++g)  // p as bf16 pairs, round to nearest even
      _mm256_storeu_si256((__m256i*)(s.pairs.data() + g * (L / 2)), (__m256i)_mm512_cvtneps_pbh(fload(s.p.data() + g * L)));
    const at::BFloat16* vh = v + (it.h0 + hl) * D;
    int64_t g = 0;
    for (; g + 4 <= G; g += 4) pv_rows_bf16<4>(pr, s, vh, t, nt, g, r0 + g);
    for (; g + 2 <= G; g += 2) pv_rows_bf16<2>(pr, s, vh, t, nt, g, r0 + g);
    for (; g < G; ++g) pv_rows_bf16<1>(pr, s, vh, t, nt, g, r0 + g);
  };
  tiles(pr, it, s, k, v, dots, pv);
  unpermute(s, it.NH * G, D);
}
#endif

// One work item -> s.m, s.l, s.acc for its R = NH G rows (query heads h0 G ..).
template <typename T>
void run_item(const Problem& pr, const Item& it, Scratch& s, const T* q, const T* k, const T* v) {
  chunk_slots(pr, it.b, it.p0, it.p1, s.slots.data());
  const T* qh = q + it.b * pr.q_row + it.h0 * pr.G * pr.D;  // the item's R query heads
#ifdef MSK_ATTN_BF16
  if constexpr (std::is_same_v<T, at::BFloat16>) {
    if (pr.D % 32 == 0) {
      if (pr.D == 128)
        item_bf16<4>(pr, it, s, qh, k, v);
      else if (pr.D == 64)
        item_bf16<2>(pr, it, s, qh, k, v);
      else
        item_bf16<0>(pr, it, s, qh, k, v);
      return;
    }
  }
#endif
  item_f32(pr, it, s, qh, k, v);
}

inline int64_t chunks_of(const Problem& pr, int64_t b) { return (pr.seq_len[b] - pr.k_start[b] + CHUNK - 1) / CHUNK; }

template <typename T>
void run(const Problem& pr, const T* q, const T* k, const T* v, T* out) {
  const int64_t G = pr.G, D = pr.D, W = D + 2;
  // chunk0[b]: sequence b's first chunk among all sequences' chunks.
  std::vector<int64_t> chunk0(pr.B + 1, 0);
  for (int64_t b = 0; b < pr.B; ++b) chunk0[b + 1] = chunk0[b] + chunks_of(pr, b);
  const int64_t chunks = chunk0[pr.B];
  // Items: (chunk, group of NH kv heads), all kv heads in one unless that leaves the threads
  // too few items. The grouping changes only who computes what, never a number.
  int64_t NH = pr.KV;
  while (NH % 2 == 0 && chunks * (pr.KV / NH) < 4 * at::get_num_threads()) NH /= 2;
  const int64_t groups = pr.KV / NH;
  // Partial results of sequences of several chunks, per (chunk, kv head, query head): m, l, acc.
  const bool merge = chunks > pr.B;
  at::Tensor partial = at::empty({merge ? chunks * pr.KV * G * W : 0}, at::kFloat);
  float* part = partial.data_ptr<float>();
  at::parallel_for(0, chunks * groups, 1, [&](int64_t begin, int64_t end) {
    Scratch s(NH * G, G, D);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t chunk = i / groups, b = std::upper_bound(chunk0.begin(), chunk0.end(), chunk) - chunk0.begin() - 1;
      const int64_t c = chunk - chunk0[b], nc = chunk0[b + 1] - chunk0[b], p0 = pr.k_start[b] + c * CHUNK;
      const Item it{b, (i % groups) * NH, NH, p0, std::min(pr.seq_len[b], p0 + CHUNK)};
      run_item(pr, it, s, q, k, v);
      for (int64_t r = 0; r < NH * G; ++r) {
        const float* acc = s.acc.data() + r * D;
        if (nc == 1) {  // done: acc / l
          const F32 inv = fset(1.f / s.l[r]);
          T* o = out + b * pr.H * D + (it.h0 * G + r) * D;
          for (int64_t d = 0; d < D; d += L) store_out(o + d, fmul(fload(acc + d), inv));
        } else {
          float* w = part + (chunk * pr.KV * G + it.h0 * G + r) * W;
          w[0] = s.m[r];
          w[1] = s.l[r];
          std::copy(acc, acc + D, w + 2);
        }
      }
    }
  });
  if (!merge) return;
  // The log-sum-exp merge, chunk by chunk in order, for each query head of a sequence of several.
  at::parallel_for(0, pr.B * pr.H, 16, [&](int64_t begin, int64_t end) {
    Buffer<float> sum(D);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / pr.H, h = bh % pr.H, nc = chunk0[b + 1] - chunk0[b];
      if (nc == 1) continue;
      const float* base = part + (chunk0[b] * pr.KV * G + h) * W;  // chunk c's at c KV G W further
      const int64_t step = pr.KV * G * W;
      float m = -INFINITY, l = 0.f;
      for (int64_t c = 0; c < nc; ++c) m = std::max(m, base[c * step]);
      for (int64_t d = 0; d < D; d += L) fstore(sum.data() + d, fzero());
      for (int64_t c = 0; c < nc; ++c) {
        const float* w = base + c * step;
        const float scale = std::exp(w[0] - m);
        l += scale * w[1];
        const F32 sv = fset(scale);
        for (int64_t d = 0; d < D; d += L) fstore(sum.data() + d, fmadd(sv, fload(w + 2 + d), fload(sum.data() + d)));
      }
      const F32 inv = fset(1.f / l);
      T* o = out + b * pr.H * D + h * D;
      for (int64_t d = 0; d < D; d += L) store_out(o + d, fmul(fload(sum.data() + d), inv));
    }
  });
}

}  // namespace

// q (B, H, D), its rows any stride apart; k_cache, v_cache (S, KV, D), slots any stride apart,
// q's dtype (float32 or bfloat16); block_tables (B, max_blocks) int32; k_start, seq_len (B,)
// int64: sequence b attends the keys at positions k_start[b] .. seq_len[b] - 1, position p in
// slot block_tables[b][p / block_size] * block_size + p % block_size. -> (B, H, D), q's dtype.
at::Tensor paged_decode_attention(at::Tensor q, at::Tensor k_cache, at::Tensor v_cache, at::Tensor block_tables,
                                  at::Tensor k_start, at::Tensor seq_len, int64_t block_size) {
  TORCH_CHECK(q.device().is_cpu() && k_cache.device().is_cpu() && v_cache.device().is_cpu(), "tensors must be on the CPU");
  TORCH_CHECK(q.scalar_type() == at::kFloat || q.scalar_type() == at::kBFloat16, "q must be float32 or bfloat16");
  TORCH_CHECK(k_cache.scalar_type() == q.scalar_type() && v_cache.scalar_type() == q.scalar_type(),
              "k_cache and v_cache must have q's dtype");
  TORCH_CHECK(q.dim() == 3 && k_cache.dim() == 3 && v_cache.sizes() == k_cache.sizes(),
              "q must be (B, H, D), k_cache and v_cache (slots, KV, D)");
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), S = k_cache.size(0), KV = k_cache.size(1);
  TORCH_CHECK(k_cache.size(2) == D, "k_cache's head_dim ", k_cache.size(2), " is not q's ", D);
  TORCH_CHECK(D % 16 == 0 && D % L == 0, "head_dim must be a multiple of 16, got ", D);
  TORCH_CHECK(KV > 0 && H % KV == 0, "q's heads (", H, ") must be a multiple of the cache's kv heads (", KV, ")");
  TORCH_CHECK(q.stride(2) == 1 && q.stride(1) == D, "q's heads must be contiguous (D apart)");
  for (const auto* c : {&k_cache, &v_cache})
    TORCH_CHECK(c->stride(2) == 1 && c->stride(1) == D && c->stride(0) == k_cache.stride(0),
                "k_cache and v_cache must have contiguous slots, the same strides");
  TORCH_CHECK(block_tables.scalar_type() == at::kInt && block_tables.dim() == 2 && block_tables.size(0) == B &&
                  block_tables.is_contiguous(), "block_tables must be contiguous int32 (B, max_blocks)");
  for (const auto* t : {&k_start, &seq_len})
    TORCH_CHECK(t->scalar_type() == at::kLong && t->numel() == B && t->is_contiguous() && t->device().is_cpu(),
                "k_start and seq_len must be contiguous int64 (B,)");
  TORCH_CHECK(block_size > 0 && S % block_size == 0, "the cache's slots must be whole blocks of block_size");
  q = q.stride(0) >= H * D ? q : q.contiguous();
  Problem pr{B, H, KV, H / KV, D, block_size, k_cache.stride(0), q.stride(0), (float)(1.0 / std::sqrt((double)D)),
             block_tables.data_ptr<int32_t>(), block_tables.size(1), k_start.data_ptr<int64_t>(),
             seq_len.data_ptr<int64_t>()};
  // Every block a sequence reads must be one of the cache's.
  const int64_t blocks = S / block_size;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t ks = pr.k_start[b], sl = pr.seq_len[b];
    TORCH_CHECK(0 <= ks && ks < sl && sl <= pr.max_blocks * block_size, "sequence ", b, ": keys ", ks, "..", sl - 1,
                " are not within its block table of ", pr.max_blocks, " blocks");
    for (int64_t i = ks / block_size; i <= (sl - 1) / block_size; ++i) {
      const int32_t t = pr.tables[b * pr.max_blocks + i];
      TORCH_CHECK(0 <= t && t < blocks, "sequence ", b, ": block ", t, " is not in the cache (", blocks, " blocks)");
    }
  }
  at::Tensor out = at::empty({B, H, D}, q.options().memory_format(at::MemoryFormat::Contiguous));
  if (q.scalar_type() == at::kBFloat16)
    run(pr, q.data_ptr<at::BFloat16>(), k_cache.data_ptr<at::BFloat16>(), v_cache.data_ptr<at::BFloat16>(),
        out.data_ptr<at::BFloat16>());
  else
    run(pr, q.data_ptr<float>(), k_cache.data_ptr<float>(), v_cache.data_ptr<float>(), out.data_ptr<float>());
  return out;
}

}  // namespace mskernels
