// bf16 matmul on x86 CPUs: y (M, N) = x (M, K) @ W^T, x and W bf16, sums in float32.
//
// Why: the bf16 GEMM F.linear reaches on CPU (oneDNN) reads the weights at 4-12 GB/s at M = 1..16
// rows (6 x 256 @ 256 x 32768, the demo model's output layer, took 4.3 ms on one thread), where
// a decode step should be bound by reading the weights once; and on CPUs without AVX512-BF16
// oneDNN emulates bf16 at a few GFLOP/s at any M.
//
// How: with AVX512-BF16, vdpbf16ps adds two bf16 products into each of 16 float32 lanes; else
// each weight is widened to float32 (exact: a bf16 is the top half of a float) and meets the
// activations, widened once per call, in FMAs. A bf16 product is exact in float32, so the result
// differs from any other float32-summing GEMM only in the order of the sums. Weights are read as
// stored, row-major (N, K), in tiles of 1, 2 or 4 activation rows against several weight rows.
// Every output is summed in the same order whatever M is, so a row's result never depends on
// the rows beside it (which a kernel chosen by batch size breaks). At 64 and more rows (prefill)
// oneDNN's AVX512-BF16 GEMM is faster: 0.7-0.9x of it (see the README).
#include "common.h"

namespace mskernels {
namespace {

constexpr int BF16_AHEAD = 16;  // rows ahead to prefetch (as int8_tile: rows are short streams)

#if defined(__AVX512BF16__) && defined(MSK_WIDE)
constexpr int NT1 = 8, NT2 = 4, NT4 = 4;
using XType = at::BFloat16;  // the activations as the tile reads them

template <int NT, int MT>
inline void bf16_tile(const at::BFloat16* w, int64_t K, const XType* x, int64_t m0, float* y, int64_t ldy) {
  F32 acc[NT][MT];
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) acc[n][m] = fzero();
  for (int64_t k = 0; k < K; k += 32) {
    __m512bh wv[NT];
    for (int n = 0; n < NT; ++n) {
      _mm_prefetch((const char*)(w + (n + BF16_AHEAD) * K + k), _MM_HINT_T1);
      wv[n] = (__m512bh)_mm512_loadu_si512(w + n * K + k);
    }
    for (int m = 0; m < MT; ++m) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + (m0 + m) * K + k);
      for (int n = 0; n < NT; ++n) acc[n][m] = _mm512_dpbf16_ps(acc[n][m], wv[n], xv);
    }
  }
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) y[(m0 + m) * ldy + n] = fsum(acc[n][m]);
}

#else  // widened to float32: one FMA per product, on any width
constexpr int NT1 = WIDE ? 8 : 4, NT2 = 4, NT4 = WIDE ? 4 : 2;
using XType = float;

// One vector of 2L bf16 as two of L float32 (zeros below each bf16): an in-lane unpack, one
// instruction where a widening load takes two. The columns come out of order, in the same order
// for the weights and for the activations (widen_rows), so the products are the same.
inline void widen(I32 v, F32& lo, F32& hi) {
  lo = as_float(unpacklo16(izero(), v));
  hi = as_float(unpackhi16(izero(), v));
}

// x (M, K) bf16 -> float32 in widen's column order.
at::Tensor widen_rows(const at::Tensor& x, int64_t M, int64_t K) {
  at::Tensor out = at::empty({M, K}, at::kFloat);
  const at::BFloat16* src = x.data_ptr<at::BFloat16>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, M, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin * K; i < end * K; i += 2 * L) {
      F32 lo, hi;
      widen(iload(src + i), lo, hi);
      fstore(dst + i, lo);
      fstore(dst + i + L, hi);
    }
  });
  return out;
}

template <int NT, int MT>
inline void bf16_tile(const at::BFloat16* w, int64_t K, const XType* x, int64_t m0, float* y, int64_t ldy) {
  F32 acc[NT][MT];
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) acc[n][m] = fzero();
  for (int64_t k = 0; k < K; k += 32) {  // one cache line of each weight row
    for (int n = 0; n < NT; ++n) _mm_prefetch((const char*)(w + (n + BF16_AHEAD) * K + k), _MM_HINT_T1);
    for (int64_t kv = k; kv < k + 32; kv += 2 * L) {
      F32 lo[NT], hi[NT];
      for (int n = 0; n < NT; ++n) widen(iload(w + n * K + kv), lo[n], hi[n]);
      for (int m = 0; m < MT; ++m) {
        const F32 xlo = fload(x + (m0 + m) * K + kv), xhi = fload(x + (m0 + m) * K + kv + L);
        for (int n = 0; n < NT; ++n) acc[n][m] = fmadd(hi[n], xhi, fmadd(lo[n], xlo, acc[n][m]));
      }
    }
  }
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) y[(m0 + m) * ldy + n] = fsum(acc[n][m]);
}
#endif

}  // namespace

const char* bf16_isa() {
#if defined(__AVX512BF16__) && defined(MSK_WIDE)
  return "AVX512-BF16";
#else
  return ISA;
#endif
}

at::Tensor bf16_linear(at::Tensor x, at::Tensor w) {
  const int64_t N = w.size(0), K = w.size(1);
  check_input(x, K, 32);
  TORCH_CHECK(x.scalar_type() == at::kBFloat16, "x must be bfloat16");
  TORCH_CHECK(w.scalar_type() == at::kBFloat16 && w.is_contiguous(), "w must be contiguous bfloat16 (N, K)");
  x = x.contiguous();
  const int64_t M = x.numel() / K;
  at::Tensor yt = at::empty({M, N}, at::kFloat);
  float* y = yt.data_ptr<float>();
#if defined(__AVX512BF16__) && defined(MSK_WIDE)
  const at::Tensor& xt = x;
#else
  const at::Tensor xt = widen_rows(x, M, K);  // exact
#endif
  const XType* xp = xt.data_ptr<XType>();
  const at::BFloat16* wp = w.data_ptr<at::BFloat16>();
  for_tiles<NT1, NT2, NT4>(M, N, [&]<int NT, int MT>(int64_t n, int64_t m) {
    bf16_tile<NT, MT>(wp + n * K, K, xp, m, y + n, N);
  });
  return finish(yt, x, N);
}

}  // namespace mskernels
