// bf16 matmul on x86 CPUs with AVX512-BF16: y (M, N) = x (M, K) @ W^T, x and W bf16, sums in
// float32.
//
// Why: the bf16 GEMM F.linear reaches on CPU (oneDNN) reads the weights at 4-12 GB/s at M = 1..16
// rows (6 x 256 @ 256 x 32768, the demo model's output layer, took 4.3 ms on one thread), where
// a decode step should be bound by reading the weights once.
//
// How: vdpbf16ps adds two bf16 products into each of 16 float32 lanes; a bf16 product is exact in
// float32, so the result differs from any other float32-summing GEMM only in the order of the
// sums. Weights are read as stored, row-major (N, K), in tiles of 1, 2 or 4 activation rows
// against 8, 4 or 4 weight rows. Every output is summed in the same order whatever M is, so a
// row's result never depends on the rows beside it (which a kernel chosen by batch size breaks).
// At 64 and more rows (prefill) oneDNN is faster: 0.7-0.9x of it here (see the README).
#include "common.h"

namespace mskernels {

#ifdef __AVX512BF16__
namespace {

constexpr int BF16_AHEAD = 16;  // rows ahead to prefetch (as int8_tile: rows are short streams)

template <int NT, int MT>
inline void bf16_tile(const at::BFloat16* w, int64_t K, const at::BFloat16* x, int64_t m0, float* y, int64_t ldy) {
  F32 acc[NT][MT];
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) acc[n][m] = _mm512_setzero_ps();
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
    for (int m = 0; m < MT; ++m) y[(m0 + m) * ldy + n] = _mm512_reduce_add_ps(acc[n][m]);
}

}  // namespace

bool has_bf16_linear() { return true; }

at::Tensor bf16_linear(at::Tensor x, at::Tensor w) {
  const int64_t N = w.size(0), K = w.size(1);
  check_input(x, K, 32);
  TORCH_CHECK(x.scalar_type() == at::kBFloat16, "x must be bfloat16");
  TORCH_CHECK(w.scalar_type() == at::kBFloat16 && w.is_contiguous(), "w must be contiguous bfloat16 (N, K)");
  x = x.contiguous();
  const int64_t M = x.numel() / K;
  at::Tensor yt = at::empty({M, N}, at::kFloat);
  float* y = yt.data_ptr<float>();
  const at::BFloat16 *wp = w.data_ptr<at::BFloat16>(), *xp = x.data_ptr<at::BFloat16>();
  auto tiles = [&](auto nt_full, auto mt) {
    constexpr int NT = decltype(nt_full)::value, MT = decltype(mt)::value;
    return [&](int64_t n0, int64_t n1, int64_t m) {
      int64_t n = n0;
      for (; n + NT <= n1; n += NT) bf16_tile<NT, MT>(wp + n * K, K, xp, m, y + n, N);
      for (; n < n1; ++n) bf16_tile<1, MT>(wp + n * K, K, xp, m, y + n, N);
    };
  };
  for_tiles(M, N, tiles(std::integral_constant<int, 8>{}, std::integral_constant<int, 1>{}),
            tiles(std::integral_constant<int, 4>{}, std::integral_constant<int, 2>{}),
            tiles(std::integral_constant<int, 4>{}, std::integral_constant<int, 4>{}));
  return finish(yt, x, N);
}

#else  // built for a CPU without AVX512-BF16: the layers keep F.linear

bool has_bf16_linear() { return false; }

at::Tensor bf16_linear(at::Tensor, at::Tensor) {
  TORCH_CHECK(false, "bf16_linear: this build's CPU lacks AVX512-BF16");
}

#endif

}  // namespace mskernels
