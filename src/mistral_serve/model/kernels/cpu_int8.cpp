// Weight-only int8 matmul for x86 CPUs: y (M, N) = x (M, K) @ W^T, W int8 (N, K) row-major with
// one float32 scale per output row (as stored).
//
// Why: PyTorch's stock CPU kernel (_weight_int8pack_mm) converts every weight to float and reaches
// about a third of the memory bandwidth at decode (M = 1..16 rows), where a decode step should be
// bound by reading the weights once.
//
// How: the activations are rounded to int16 with one scale per 512-column block (quant_input.h);
// two in-lane shifts sign-extend a weight to int16, and int16 pair multiply-adds (vpdpwssd with
// VNNI, vpmaddwd + vpaddd without) sum each block exactly in int32, scaled into float
// accumulators once per block. Nothing overflows: a lane adds at most 4 * 512 / VBYTES products
// of 128 * 32767 per block (2^28 on AVX2).
#include "quant_input.h"

namespace mskernels {
namespace {

#ifndef PF
#define PF 2  // tiles ahead to prefetch
#endif
// Weight rows per tile for 1, 2 and 4 activation rows: AVX-512 has 32 vector registers for the
// accumulators (two per output), AVX2 16 (its 2 x 4 tile spills the float sums, touched once per
// block, and still beat 1 x 4 by up to 1.35x).
constexpr int NT1 = WIDE ? 8 : 4, NT2 = WIDE ? 4 : 2, NT4 = 2;

template <int NT, int MT>
inline void int8_tile(const int8_t* w, int64_t K, const Int16Rows& x, int64_t m0, const float* wscale,
                      float* y, int64_t ldy) {
  F32 facc[NT][MT];
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) facc[n][m] = fzero();
  for (int64_t b = 0; b < x.nb; ++b) {
    I32 acc[NT][MT];
    for (int n = 0; n < NT; ++n)
      for (int m = 0; m < MT; ++m) acc[n][m] = izero();
    const int64_t k0 = b * BLOCK, k1 = std::min(K, k0 + BLOCK);
    for (int64_t k = k0; k < k1; k += 64) {  // one cache line of each weight row
      for (int n = 0; n < NT; ++n)
        // The same columns of the next tiles' rows, to L2: rows are contiguous, so this is the
        // next stretch of memory. Short rows (K = 2048: 2 KB) otherwise end each hardware
        // prefetch stream before it ramps up, halving the read rate.
        _mm_prefetch((const char*)(w + (n + PF * NT) * K + k), _MM_HINT_T1);
      for (int64_t kv = k; kv < k + 64; kv += VBYTES) {
        // VBYTES weights as 2L int16 lanes: lane i holds columns 2i (low byte) and 2i + 1 (high
        // byte); two in-lane shifts sign-extend them, cheaper than a widening shuffle.
        I32 even[NT], odd[NT];
        for (int n = 0; n < NT; ++n) {
          const I32 v = iload(w + n * K + kv);
          even[n] = sar16<8>(shl16<8>(v));
          odd[n] = sar16<8>(v);
        }
        for (int m = 0; m < MT; ++m) {
          const int16_t* xp = x.q.data() + (m0 + m) * x.kp + kv;
          const I32 xe = iload(xp), xo = iload(xp + VBYTES / 2);
          for (int n = 0; n < NT; ++n) acc[n][m] = dot_i16(dot_i16(acc[n][m], even[n], xe), odd[n], xo);
        }
      }
    }
    for (int m = 0; m < MT; ++m) {
      const F32 s = fset(x.scale[(m0 + m) * x.nb + b]);
      for (int n = 0; n < NT; ++n) facc[n][m] = fmadd(to_float(acc[n][m]), s, facc[n][m]);
    }
  }
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) y[(m0 + m) * ldy + n] = fsum(facc[n][m]) * wscale[n];
}

}  // namespace

at::Tensor int8_linear(at::Tensor x, at::Tensor w, at::Tensor scale) {
  const int64_t N = w.size(0), K = w.size(1);
  check_input(x, K, 64);
  TORCH_CHECK(w.scalar_type() == at::kChar && w.is_contiguous(), "w must be contiguous int8 (N, K)");
  TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.numel() == N, "scale must be float32 (N,)");
  x = x.contiguous();
  const int64_t M = x.numel() / K;
  const Int16Rows xq = quantize_input<Int16Rows>(x, M, K);
  at::Tensor yt = at::empty({M, N}, at::kFloat);
  float* y = yt.data_ptr<float>();
  const int8_t* wp = w.data_ptr<int8_t>();
  const float* sp = scale.data_ptr<float>();
  for_tiles<NT1, NT2, NT4>(M, N, [&]<int NT, int MT>(int64_t n, int64_t m) {
    int8_tile<NT, MT>(wp + n * K, K, xq, m, sp + n, y + n, N);
  });
  return finish(yt, x, N);
}

}  // namespace mskernels
