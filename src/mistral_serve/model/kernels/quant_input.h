// The quantized matmuls' activations, rounded to integers once per call (cpu_int8.cpp, cpu_int4.cpp).
//
// int8, one scale per 32-column sub-group: llama.cpp's Q8_0 rounding of activations, error below
// max|x| / 254 of the sub-group (about 15x smaller than int4 weights' own), and an outlier costs
// only its own sub-group precision. Scales come from a maximum and the values from a rounding,
// both exact in any order, so both vector widths round the activations identically.
#pragma once
#include "common.h"

namespace mskernels {

constexpr int64_t BLOCK = 512;  // columns per block of the packed weights (16 sub-groups)
constexpr int64_t SUB = 32;     // columns per sub-group: one activation scale, one int32 lane per block
// Activation blocks per thread when rounding them: one decode row (K <= 8192) stays on the calling
// thread, as starting the thread pool costs more than the rounding.
constexpr int64_t QUANT_GRAIN = 16;

// Columns k0 .. k0 + 511 of one activation row as float32 (zero past K); returns max |x|.
// K is a multiple of 64 (checked by the caller), so blocks hold whole vectors.
template <typename T>
inline float load_block(const T* row, int64_t K, int64_t k0, float* buf) {
  const int64_t n = std::min(BLOCK, K - k0);
  F32 amax = fzero();
  for (int64_t k = 0; k < BLOCK; k += L) {
    const F32 v = k < n ? load(row + k0 + k) : fzero();
    fstore(buf + k, v);
    amax = vmax(amax, vabs(v));
  }
  return fmaxof(amax);
}

// The columns of K padded to whole 512-column blocks.
struct Blocks {
  int64_t kp, nb;
  explicit Blocks(int64_t K) : kp((K + BLOCK - 1) / BLOCK * BLOCK), nb(kp / BLOCK) {}
};

// The int8 and int4 kernels' activations: int8, one scale per 32-column sub-group.
struct Int8Rows : Blocks {
  std::vector<int8_t> q;      // (M, Kp), in the order of the packed weights (see quantize_int8)
  std::vector<float> scale;   // (M, Kp / SUB)
  std::vector<float> sums;    // (M, Kp / SUB): scale * the sum of the sub-group's rounded values
  std::vector<int32_t> qsum;  // (M, Kp / SUB): the sum of the sub-group's rounded values
  Int8Rows(int64_t M, int64_t K)
      : Blocks(K), q(M * kp, 0), scale(M * kp / SUB, 0.f), sums(M * kp / SUB, 0.f), qsum(M * kp / SUB, 0) {}
};

template <typename T>
Int8Rows quantize_int8(const T* x, int64_t M, int64_t K) {
  Int8Rows r(M, K);
  const int64_t groups = r.kp / SUB;
  at::parallel_for(0, M * r.nb, QUANT_GRAIN, [&](int64_t begin, int64_t end) {
    alignas(64) float buf[BLOCK];
    alignas(64) int8_t nat[BLOCK];  // the block's rounded values in column order
    for (int64_t i = begin; i < end; ++i) {
      const int64_t m = i / r.nb, b = i % r.nb;
      load_block(x + m * K, K, b * BLOCK, buf);
      for (int j = 0; j < 16; ++j) {
        const float* g = buf + j * SUB;
        F32 amax = fzero();
        for (int v = 0; v < SUB; v += L) amax = vmax(amax, vabs(fload(g + v)));
        const float mx = fmaxof(amax);
        const float s = mx > 0.f ? mx / 127.f : 1.f;
        const F32 inv = fset(1.f / s);
        I32 sum = izero();
        for (int v = 0; v < SUB; v += L) {
          const I32 q = to_int(fmul(fload(g + v), inv));
          store_i8(nat + j * SUB + v, q);
          sum = add32(sum, q);
        }
        const int total = isum(sum);
        r.scale[b * 16 + j + m * groups] = s;
        r.sums[b * 16 + j + m * groups] = s * (float)total;
        r.qsum[b * 16 + j + m * groups] = total;
      }
      // Step t (0..7) of the block is 64 bytes: bytes 4j..4j+3 are sub-group j's columns
      // 4t..4t+3 (the order pack_int4 gives the nibbles), i.e. a transpose of 4-byte words.
      const int32_t* words = (const int32_t*)nat;
      int32_t* out = (int32_t*)(r.q.data() + m * r.kp + b * BLOCK);
      for (int t = 0; t < 8; ++t)
        for (int j = 0; j < 16; ++j) out[t * 16 + j] = words[j * 8 + t];
    }
  });
  return r;
}

inline Int8Rows quantize_input(const at::Tensor& x, int64_t M, int64_t K) {
  if (x.scalar_type() == at::kBFloat16) return quantize_int8(x.data_ptr<at::BFloat16>(), M, K);
  return quantize_int8(x.data_ptr<float>(), M, K);
}

}  // namespace mskernels
