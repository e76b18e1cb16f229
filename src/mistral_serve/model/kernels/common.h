// Shared by our CPU kernels (cpu_quant.cpp, cpu_bf16.cpp, cpu_ops.cpp): vector types, the row-chunked
// parallel loop over tiles, and the checks and output conversion every entry point does.
#pragma once
// ATen's own headers, not torch/extension.h: the kernels need tensors and the thread pool, and
// the full header set took most of the build's time (about a minute per file on 2 cores).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace mskernels {

using I16 = __m512i;  // 32 x int16
using I32 = __m512i;  // 16 x int32
using F32 = __m512;   // 16 x float

// 16 consecutive float32 or bfloat16 values as float32 (a bf16 is the top half of a float).
inline F32 load16(const float* p) { return _mm512_loadu_ps(p); }
inline F32 load16(const at::BFloat16* p) {
  const __m256i h = _mm256_loadu_si256((const __m256i*)p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Rows of W are split among threads in chunks of ROWS; each chunk's weights (at most 8 rows x K)
// stay in L2 while every tile of activation rows passes over them, so W is read from memory once.
constexpr int64_t ROWS = 8;

template <typename Tile1, typename Tile2, typename Tile4>
inline void for_tiles(int64_t M, int64_t N, Tile1 one_row, Tile2 two_rows, Tile4 four_rows) {
  at::parallel_for(0, (N + ROWS - 1) / ROWS, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t n0 = c * ROWS, n1 = std::min(N, n0 + ROWS);
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) four_rows(n0, n1, m);
      for (; m + 2 <= M; m += 2) two_rows(n0, n1, m);
      if (m < M) one_row(n0, n1, m);
    }
  });
}

inline at::Tensor finish(const at::Tensor& y, const at::Tensor& x, int64_t N) {
  auto shape = x.sizes().vec();
  shape.back() = N;
  return y.to(x.scalar_type()).reshape(shape);
}

// x (..., K) float32 or bfloat16 on the CPU, K a multiple of `multiple`.
inline void check_input(const at::Tensor& x, int64_t K, int64_t multiple) {
  TORCH_CHECK(x.device().is_cpu(), "cpu kernel: x must be on the CPU");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, "x must be float32 or bfloat16");
  TORCH_CHECK(x.size(-1) == K, "x has ", x.size(-1), " columns, the weight ", K);
  TORCH_CHECK(K % multiple == 0, "K must be a multiple of ", multiple);
}

}  // namespace mskernels
