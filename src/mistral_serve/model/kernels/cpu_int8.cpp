// Weight-only int8 matmul for x86 CPUs: y (M, N) = x (M, K) @ (W * scale[:, None])^T, W int8
// (N, K) with one float32 scale per output row, in a layout made for the kernel (pack_int8).
//
// Why: PyTorch's stock CPU kernel (_weight_int8pack_mm) converts every weight to float and reaches
// about a third of the memory bandwidth at decode (M = 1..16 rows); and at prefill (hundreds of
// rows) a kernel whose multiply-adds take int16 pairs (vpdpwssd) does half the work per
// instruction of one on bytes (vpdpbusd), which oneDNN's int8 GEMM uses.
//
// How: the activations are int8 with one scale per 32-column sub-group (quant_input.h), laid out
// as the int4 kernel's, so int32 lane j of an accumulator sums sub-group j of a 512-column block
// (AVX-512: one vector of 16 lanes; AVX2: two of 8) and the activation scales apply as vectors
// once per block. vpdpbusd multiplies unsigned by signed bytes, so the weights are stored as
// w + 128 (unsigned) and each sub-group's sum loses 128 times the sum of its activations (exact,
// in int32). Without VNNI: the byte pairs of vpmaddubsw (|w| times x with w's sign), widened to
// int32 at every step (two pairs of 128 * 127 fill int16).
#include "quant_input.h"

namespace mskernels {
namespace {

#ifndef PF
#define PF 2  // tiles ahead to prefetch
#endif
constexpr int PARTS = 16 / L;  // vectors per 64-byte step: L sub-groups' 4-byte words each
// Weight rows per tile for 1, 2 and MTB activation rows (an int32 and a float accumulator per
// output; AVX-512 has 32 vector registers, AVX2 16). At prefill on AVX-512, 2 x 6 tiles beat
// 2 x 4 and 4 x 4 by a few percent (loads and multiply-adds balance best).
constexpr int NT1 = WIDE ? 8 : 4, NT2 = WIDE ? 4 : 2, NT4 = 2, MTB = WIDE ? 6 : 4;

// acc + the products of u8 (w + 128) and s8 (x) 4-byte words.
inline I32 dot_w8x8(I32 acc, I32 w, I32 x) {
#ifdef MSK_VNNI
  return dpbusd(acc, w, x);
#else
  const I32 s = xor_(w, iset8((char)0x80));  // w as signed again
  return add32(acc, madd16(maddubs(abs8(s), sign8(x, s)), iset16(1)));
#endif
}

template <int NT, int MT>
inline void int8_tile(const uint8_t* w, int64_t kp, const Int8Rows& x, int64_t m0, const float* wscale,
                      float* y, int64_t ldy) {
  F32 facc[NT][MT];
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) facc[n][m] = fzero();
  const int64_t groups = kp / SUB;
  // Part by part (AVX2: sub-groups 0-7 of every step, then 8-15), so that one int32 sum per
  // output is live: the other half of each line is read again from L1.
  for (int64_t b = 0; b < x.nb; ++b)
    for (int p = 0; p < PARTS; ++p) {
      I32 acc[NT][MT];
      for (int n = 0; n < NT; ++n)
        for (int m = 0; m < MT; ++m) acc[n][m] = izero();
      const uint8_t* w0 = w + b * BLOCK + p * VBYTES;
      const int8_t* x0 = x.q.data() + m0 * kp + b * BLOCK + p * VBYTES;
      for (int t = 0; t < 8; ++t) {  // one cache line of each weight row
        if (p == 0)
          for (int n = 0; n < NT; ++n)
            // The same columns of the next tiles' rows, to L2: rows are contiguous, so this is
            // the next stretch of memory. Short rows (K = 2048: 2 KB) otherwise end each hardware
            // prefetch stream before it ramps up, halving the read rate.
            _mm_prefetch((const char*)(w0 + (n + PF * NT) * kp + t * 64), _MM_HINT_T1);
        I32 xv[MT];
        for (int m = 0; m < MT; ++m) xv[m] = iload(x0 + m * kp + t * 64);
        for (int n = 0; n < NT; ++n) {
          const I32 v = iload(w0 + n * kp + t * 64);
          for (int m = 0; m < MT; ++m) acc[n][m] = dot_w8x8(acc[n][m], v, xv[m]);
        }
      }
      for (int m = 0; m < MT; ++m) {
        const int64_t g = (m0 + m) * groups + b * 16 + p * L;
        const F32 s = fload(x.scale.data() + g);
#ifdef MSK_VNNI
        const I32 offset = shl32<7>(iload_lanes(x.qsum.data() + g));  // 128 * sum(x) per sub-group
#endif
        for (int n = 0; n < NT; ++n) {
#ifdef MSK_VNNI
          const I32 dot = sub32(acc[n][m], offset);
#else
          const I32 dot = acc[n][m];
#endif
          facc[n][m] = fmadd(to_float(dot), s, facc[n][m]);
        }
      }
    }
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) y[(m0 + m) * ldy + n] = fsum(facc[n][m]) * wscale[n];
}

}  // namespace

at::Tensor int8_linear(at::Tensor x, at::Tensor packed, at::Tensor scale, int64_t N, int64_t K) {
  check_input(x, K, 64);
  const Blocks blocks(K);
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.is_contiguous() && packed.numel() == N * blocks.kp,
              "packed int8 weight has the wrong size");
  TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.numel() == N, "scale must be float32 (N,)");
  x = x.contiguous();
  const int64_t M = x.numel() / K;
  const Int8Rows xq = quantize_input(x, M, K);
  at::Tensor yt = at::empty({M, N}, at::kFloat);
  float* y = yt.data_ptr<float>();
  const uint8_t* wp = packed.data_ptr<uint8_t>();
  const float* sp = scale.data_ptr<float>();
  for_tiles<NT1, NT2, NT4, MTB>(M, N, [&]<int NT, int MT>(int64_t n, int64_t m) {
    int8_tile<NT, MT>(wp + n * xq.kp, xq.kp, xq, m, sp + n, y + n, N);
  });
  return finish(yt, x, N);
}

// q int8 (N, K) -> the kernel's buffer (N, Kp) of q + 128: per 512-column block, 8 steps of 64
// bytes; bytes 4j .. 4j + 3 of step t hold sub-group j's columns 4t .. 4t + 3 (the order of the
// activations, quant_input.h). Padding columns hold 128 (w = 0).
at::Tensor pack_int8(at::Tensor q) {
  TORCH_CHECK(q.scalar_type() == at::kChar && q.dim() == 2, "q must be int8 (N, K)");
  q = q.contiguous();
  const int64_t N = q.size(0), K = q.size(1);
  const Blocks blocks(K);
  auto out = at::empty({N, blocks.kp}, at::kByte);
  const int8_t* src = q.data_ptr<int8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      for (int64_t b = 0; b < blocks.nb; ++b)
        for (int t = 0; t < 8; ++t)
          for (int i = 0; i < 64; ++i) {
            const int64_t col = b * BLOCK + (i / 4) * SUB + 4 * t + i % 4;
            dst[n * blocks.kp + b * BLOCK + t * 64 + i] = (uint8_t)((col < K ? src[n * K + col] : 0) + 128);
          }
  });
  return out.reshape({-1});
}

}  // namespace mskernels
