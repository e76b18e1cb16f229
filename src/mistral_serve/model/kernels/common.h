// Shared by our CPU kernels (cpu_int8.cpp, cpu_int4.cpp, cpu_bf16.cpp, cpu_ops.cpp): the
// row-chunked parallel loop over tiles, and the checks and output conversion every entry point
// does. The vector types and operations are in simd.h.
#pragma once
// ATen's own headers, not torch/extension.h: the kernels need tensors and the thread pool, and
// the full header set took most of the build's time (about a minute per file on 2 cores).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "simd.h"

namespace mskernels {

// Rows of W are split among threads in chunks of ROWS; each chunk's weights (at most 8 rows x K)
// stay in L2 while every tile of activation rows passes over them, so W is read from memory once.
constexpr int64_t ROWS = 8;

// Runs tile.template operator()<NT, MT>(n, m) over the (N, M) output: tiles of MT = MTB (4 or
// more), 4, 2 or 1 activation rows against NT = NT4 (for MTB and 4 rows), NT2 or NT1 weight rows,
// and single weight rows for the rest of a chunk. A tile computes each of its outputs in the same
// order whatever its shape, so a row's result never depends on the rows beside it.
template <int NT1, int NT2, int NT4, int MTB = 4, typename Tile>
inline void for_tiles(int64_t M, int64_t N, const Tile& tile) {
  auto row_of_tiles = [&](auto nt, auto mt, int64_t n0, int64_t n1, int64_t m) {
    constexpr int NT = decltype(nt)::value, MT = decltype(mt)::value;
    int64_t n = n0;
    for (; n + NT <= n1; n += NT) tile.template operator()<NT, MT>(n, m);
    for (; n < n1; ++n) tile.template operator()<1, MT>(n, m);
  };
  using std::integral_constant;
  at::parallel_for(0, (N + ROWS - 1) / ROWS, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t n0 = c * ROWS, n1 = std::min(N, n0 + ROWS);
      int64_t m = 0;
      for (; m + MTB <= M; m += MTB) row_of_tiles(integral_constant<int, NT4>{}, integral_constant<int, MTB>{}, n0, n1, m);
      if constexpr (MTB > 4)
        for (; m + 4 <= M; m += 4) row_of_tiles(integral_constant<int, NT4>{}, integral_constant<int, 4>{}, n0, n1, m);
      for (; m + 2 <= M; m += 2) row_of_tiles(integral_constant<int, NT2>{}, integral_constant<int, 2>{}, n0, n1, m);
      if (m < M) row_of_tiles(integral_constant<int, NT1>{}, integral_constant<int, 1>{}, n0, n1, m);
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
