// Weight-only int8 and int4 matmuls for x86 CPUs with AVX-512: y (M, N) = x (M, K) @ W^T.
//
// Why: PyTorch's stock CPU kernels (_weight_int8pack_mm, _weight_int4pack_mm_for_cpu) convert
// every weight to float and reach about a third of this machine's memory bandwidth at decode
// (M = 1..16 rows), where a decode step should be bound by reading the weights once.
//
// How: the activations are rounded to integers so that weights meet them in integer
// multiply-adds (AVX512-VNNI, or two AVX512-BW instructions without it), summed exactly in int32
// per block and scaled into float accumulators once per block.
//
// int8 weights: row-major (N, K) int8, one float32 scale per output row (as stored). Activations
// are int16 with one scale per 512-column block (error below max|x| / 65000, finer than the bf16
// the model computes with); two in-lane shifts sign-extend a weight to int16, and vpdpwssd
// multiplies pairs. Nothing overflows (at most 2 * 16 * 128 * 32767 per lane and block).
//
// int4 weights: one buffer in a layout made for the kernel (see pack_int4): a 512-column block
// is 16 sub-groups of 32 columns, and int32 lane j of the accumulator sums sub-group j, so the
// group scales apply as one vector per block. w = q * scale + low (q in 0..15, per group), with
// scale and low kept as fp16 (groups of 32 to 512 columns) right after the block's 256 bytes of
// nibbles, so that each row is one stream through memory. Activations are int8 with one scale
// per 32-column sub-group (llama.cpp's Q8_0 rounding: error below max|x| / 254 of the sub-group,
// about 15x smaller than the int4 weights' own), so a nibble takes one byte multiply-add
// (vpdpbusd: 64 per instruction, u8 x s8).
#include "common.h"

namespace mskernels {
namespace {

constexpr int64_t BLOCK = 512;  // columns per activation scale, and per int4 super-block
constexpr int64_t SUB = 32;     // columns per int4 sub-group (one int32 lane per block)
#ifndef PF
#define PF 2  // int8: tiles ahead to prefetch
#endif
// Activation blocks per thread when rounding them: one decode row (K <= 8192) stays on the calling
// thread, as starting the thread pool costs more than the rounding.
constexpr int64_t QUANT_GRAIN = 16;
constexpr int64_t INT4_AHEAD = 8;  // int4: rows ahead to prefetch (8 beat 16 here at one row)

inline I16 load_i16(const int16_t* p) { return _mm512_loadu_si512(p); }
inline I32 dot_acc(I32 acc, I16 a, I16 b) {
#ifdef __AVX512VNNI__
  return _mm512_dpwssd_epi32(acc, a, b);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}
inline I32 dot_u8s8(I32 acc, I16 u, I16 s) {
#ifdef __AVX512VNNI__
  return _mm512_dpbusd_epi32(acc, u, s);
#else
  // u <= 15 and |s| <= 128: the int16 pair sums cannot saturate.
  return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
#endif
}
inline F32 load_f16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }

// ---------------------------------------------------------------- activations

// Columns k0 .. k0 + 511 of one activation row as float32 (zero past K); returns max |x|.
// K is a multiple of 64 (checked by the caller), so blocks hold whole 16-float vectors.
template <typename T>
inline float load_block(const T* row, int64_t K, int64_t k0, float* buf) {
  const int64_t n = std::min(BLOCK, K - k0);
  F32 amax = _mm512_setzero_ps();
  for (int64_t k = 0; k < BLOCK; k += 16) {
    const F32 v = k < n ? load16(row + k0 + k) : _mm512_setzero_ps();
    _mm512_store_ps(buf + k, v);
    amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
  }
  return _mm512_reduce_max_ps(amax);
}

// The columns of K padded to whole 512-column blocks.
struct Blocks {
  int64_t kp, nb;
  explicit Blocks(int64_t K) : kp((K + BLOCK - 1) / BLOCK * BLOCK), nb(kp / BLOCK) {}
};

// int8 kernel's activations: int16, one scale per 512-column block.
struct Int16Rows : Blocks {
  std::vector<int16_t> q;    // (M, Kp); per 64 columns the 32 even ones, then the 32 odd ones
  std::vector<float> scale;  // (M, nb)
  Int16Rows(int64_t M, int64_t K) : Blocks(K), q(M * kp, 0), scale(M * nb, 0.f) {}
};

template <typename T>
Int16Rows quantize_int16(const T* x, int64_t M, int64_t K) {
  Int16Rows r(M, K);
  at::parallel_for(0, M * r.nb, QUANT_GRAIN, [&](int64_t begin, int64_t end) {
    alignas(64) float buf[BLOCK];
    alignas(64) int16_t nat[BLOCK];
    for (int64_t i = begin; i < end; ++i) {
      const int64_t m = i / r.nb, b = i % r.nb;
      const float mx = load_block(x + m * K, K, b * BLOCK, buf);
      const float s = mx > 0.f ? mx / 32767.f : 1.f;
      const F32 inv = _mm512_set1_ps(1.f / s);
      for (int64_t k = 0; k < BLOCK; k += 16) {
        __m512i qi = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(buf + k), inv));
        _mm256_store_si256((__m256i*)(nat + k), _mm512_cvtsepi32_epi16(qi));
      }
      r.scale[i] = s;
      int16_t* out = r.q.data() + m * r.kp + b * BLOCK;
      for (int c = 0; c < BLOCK; c += 64)  // see int8_tile
        for (int e = 0; e < 32; ++e) {
          out[c + e] = nat[c + 2 * e];
          out[c + 32 + e] = nat[c + 2 * e + 1];
        }
    }
  });
  return r;
}

// int4 kernel's activations: int8, one scale per 32-column sub-group.
struct Int8Rows : Blocks {
  std::vector<int8_t> q;     // (M, Kp), in the order of the packed nibbles (see quantize_int8)
  std::vector<float> scale;  // (M, Kp / SUB)
  std::vector<float> sums;   // (M, Kp / SUB): scale * the sum of the sub-group's rounded values
  Int8Rows(int64_t M, int64_t K) : Blocks(K), q(M * kp, 0), scale(M * kp / SUB, 0.f), sums(M * kp / SUB, 0.f) {}
};

template <typename T>
Int8Rows quantize_int8(const T* x, int64_t M, int64_t K) {
  Int8Rows r(M, K);
  const int64_t groups = r.kp / SUB;
  at::parallel_for(0, M * r.nb, QUANT_GRAIN, [&](int64_t begin, int64_t end) {
    alignas(64) float buf[BLOCK];
    alignas(64) int32_t nat[BLOCK / 4];  // the block's rounded values, 4 bytes per word
    for (int64_t i = begin; i < end; ++i) {
      const int64_t m = i / r.nb, b = i % r.nb;
      load_block(x + m * K, K, b * BLOCK, buf);
      for (int j = 0; j < 16; ++j) {
        const F32 v0 = _mm512_load_ps(buf + j * SUB), v1 = _mm512_load_ps(buf + j * SUB + 16);
        const float mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float s = mx > 0.f ? mx / 127.f : 1.f;
        const F32 inv = _mm512_set1_ps(1.f / s);
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv));
        _mm_store_si128((__m128i*)(nat + j * 8), _mm512_cvtsepi32_epi8(q0));
        _mm_store_si128((__m128i*)(nat + j * 8 + 4), _mm512_cvtsepi32_epi8(q1));
        r.scale[b * 16 + j + m * groups] = s;
        r.sums[b * 16 + j + m * groups] = s * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
      }
      // Step t (0..7) of the block is 64 bytes: bytes 4j..4j+3 are sub-group j's columns
      // 4t..4t+3 (the order pack_int4 gives the nibbles), i.e. a transpose of 4-byte words.
      int32_t* out = (int32_t*)(r.q.data() + m * r.kp + b * BLOCK);
      for (int t = 0; t < 8; ++t)
        for (int j = 0; j < 16; ++j) out[t * 16 + j] = nat[j * 8 + t];
    }
  });
  return r;
}

template <typename Rows>
Rows quantize_input(const at::Tensor& x, int64_t M, int64_t K) {
  if constexpr (std::is_same_v<Rows, Int16Rows>) {
    if (x.scalar_type() == at::kBFloat16) return quantize_int16(x.data_ptr<at::BFloat16>(), M, K);
    return quantize_int16(x.data_ptr<float>(), M, K);
  } else {
    if (x.scalar_type() == at::kBFloat16) return quantize_int8(x.data_ptr<at::BFloat16>(), M, K);
    return quantize_int8(x.data_ptr<float>(), M, K);
  }
}

// ---------------------------------------------------------------- int8
template <int NT, int MT>
inline void int8_tile(const int8_t* w, int64_t K, const Int16Rows& x, int64_t m0, const float* wscale,
                      float* y, int64_t ldy) {
  F32 facc[NT][MT];
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) facc[n][m] = _mm512_setzero_ps();
  for (int64_t b = 0; b < x.nb; ++b) {
    I32 acc[NT][MT];
    for (int n = 0; n < NT; ++n)
      for (int m = 0; m < MT; ++m) acc[n][m] = _mm512_setzero_si512();
    const int64_t k0 = b * BLOCK, k1 = std::min(K, k0 + BLOCK);
    for (int64_t k = k0; k < k1; k += 64) {
      // 64 weights as 32 int16 lanes: lane i holds columns 2i (low byte) and 2i + 1 (high
      // byte); two in-lane shifts sign-extend them, cheaper than a widening shuffle.
      I16 even[NT], odd[NT];
      for (int n = 0; n < NT; ++n) {
        // The same columns of the next tile's rows, to L2: rows are contiguous, so this is the
        // next stretch of memory. Short rows (K = 2048: 2 KB) otherwise end each hardware
        // prefetch stream before it ramps up, halving the read rate.
        _mm_prefetch((const char*)(w + (n + PF * NT) * K + k), _MM_HINT_T1);
        const I16 v = _mm512_loadu_si512(w + n * K + k);
        even[n] = _mm512_srai_epi16(_mm512_slli_epi16(v, 8), 8);
        odd[n] = _mm512_srai_epi16(v, 8);
      }
      for (int m = 0; m < MT; ++m) {
        const int16_t* xp = x.q.data() + (m0 + m) * x.kp + k;
        const I16 xe = load_i16(xp), xo = load_i16(xp + 32);
        for (int n = 0; n < NT; ++n) acc[n][m] = dot_acc(dot_acc(acc[n][m], even[n], xe), odd[n], xo);
      }
    }
    for (int m = 0; m < MT; ++m) {
      const F32 s = _mm512_set1_ps(x.scale[(m0 + m) * x.nb + b]);
      for (int n = 0; n < NT; ++n) facc[n][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[n][m]), s, facc[n][m]);
    }
  }
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) y[(m0 + m) * ldy + n] = _mm512_reduce_add_ps(facc[n][m]) * wscale[n];
}

// ---------------------------------------------------------------- int4
// Per row and 512-column block: 256 bytes of nibbles, then 512/G fp16 scales, then 512/G fp16
// lows (see pack_int4).
struct Int4Weights {
  const uint8_t* q;
  int64_t kp, groups_per_block, block_bytes, row_bytes;
  __m512i lanes;  // sub-group j -> its group's index within the block
};

inline int64_t int4_block_bytes(int64_t group_size) { return BLOCK / 2 + 4 * (BLOCK / group_size); }

template <int NT, int MT>
inline void int4_tile(const Int4Weights& wt, int64_t n0, const Int8Rows& x, int64_t m0, float* y, int64_t ldy) {
  F32 facc[NT][MT];
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) facc[n][m] = _mm512_setzero_ps();
  const I16 nibble = _mm512_set1_epi8(0x0F);
  const int64_t groups = x.kp / SUB;
  for (int64_t b = 0; b < x.nb; ++b) {
    // Two sums per (row, activation row), low and high nibbles: two dependency chains.
    I32 acc[NT][MT], acc_hi[NT][MT];
    for (int n = 0; n < NT; ++n)
      for (int m = 0; m < MT; ++m) acc[n][m] = acc_hi[n][m] = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      I16 xv[MT][2];  // steps 2c and 2c + 1 of each activation row
      for (int m = 0; m < MT; ++m) {
        const int8_t* xp = x.q.data() + (m0 + m) * x.kp + b * BLOCK + c * 128;
        xv[m][0] = _mm512_loadu_si512(xp);
        xv[m][1] = _mm512_loadu_si512(xp + 64);
      }
      for (int n = 0; n < NT; ++n) {
        const uint8_t* wp = wt.q + (n0 + n) * wt.row_bytes + b * wt.block_bytes + c * 64;
        // The rows 8 ahead to L2, as in int8_tile, and with them the line of scales after the
        // nibbles: left to the hardware, that line alone halved the read rate.
        const uint8_t* ahead = wp + INT4_AHEAD * wt.row_bytes;
        _mm_prefetch((const char*)ahead, _MM_HINT_T1);
        if (c == 0) _mm_prefetch((const char*)(ahead + BLOCK / 2), _MM_HINT_T1);
        const I16 v = _mm512_loadu_si512(wp);
        const I16 q0 = _mm512_and_si512(v, nibble), q1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
        for (int m = 0; m < MT; ++m) {
          acc[n][m] = dot_u8s8(acc[n][m], q0, xv[m][0]);
          acc_hi[n][m] = dot_u8s8(acc_hi[n][m], q1, xv[m][1]);
        }
      }
    }
    for (int n = 0; n < NT; ++n) {
      // 16 fp16 are read where only 512/G are the block's: the rest is not used (the buffer
      // has 64 spare bytes at its end for the last block).
      const uint16_t* sp = (const uint16_t*)(wt.q + (n0 + n) * wt.row_bytes + b * wt.block_bytes + BLOCK / 2);
      const F32 s = _mm512_permutexvar_ps(wt.lanes, load_f16(sp));
      const F32 z = _mm512_permutexvar_ps(wt.lanes, load_f16(sp + wt.groups_per_block));
      for (int m = 0; m < MT; ++m) {
        // sum_k x_k w_k = sum over sub-groups of sx * scale * sum(xq * q) + low * sum(x).
        const int64_t g = (m0 + m) * groups + b * 16;
        const F32 sx = _mm512_mul_ps(s, _mm512_loadu_ps(x.scale.data() + g));
        const I32 dot = _mm512_add_epi32(acc[n][m], acc_hi[n][m]);
        facc[n][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), sx, facc[n][m]);
        facc[n][m] = _mm512_fmadd_ps(z, _mm512_loadu_ps(x.sums.data() + g), facc[n][m]);
      }
    }
  }
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) y[(m0 + m) * ldy + n0 + n] = _mm512_reduce_add_ps(facc[n][m]);
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
  auto tiles = [&](auto nt_full, auto mt) {
    constexpr int NT = decltype(nt_full)::value, MT = decltype(mt)::value;
    return [&, wp, sp](int64_t n0, int64_t n1, int64_t m) {
      int64_t n = n0;
      for (; n + NT <= n1; n += NT) int8_tile<NT, MT>(wp + n * K, K, xq, m, sp + n, y + n, N);
      for (; n < n1; ++n) int8_tile<1, MT>(wp + n * K, K, xq, m, sp + n, y + n, N);
    };
  };
  for_tiles(M, N, tiles(std::integral_constant<int, 8>{}, std::integral_constant<int, 1>{}),
            tiles(std::integral_constant<int, 4>{}, std::integral_constant<int, 2>{}),
            tiles(std::integral_constant<int, 2>{}, std::integral_constant<int, 4>{}));
  return finish(yt, x, N);
}

static void check_group(int64_t group_size) {
  TORCH_CHECK(group_size >= 32 && group_size <= BLOCK && BLOCK % group_size == 0, "group size must divide 512");
}

at::Tensor int4_linear(at::Tensor x, at::Tensor packed, int64_t N, int64_t K, int64_t group_size) {
  check_input(x, K, 64);
  check_group(group_size);
  x = x.contiguous();
  const int64_t M = x.numel() / K;
  const Int8Rows xq = quantize_input<Int8Rows>(x, M, K);
  const int64_t block_bytes = int4_block_bytes(group_size), row_bytes = xq.nb * block_bytes;
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.is_contiguous() && packed.numel() == N * row_bytes + 64,
              "packed int4 weight has the wrong size");
  alignas(64) int32_t lanes[16];
  for (int j = 0; j < 16; ++j) lanes[j] = j * SUB / group_size;
  const Int4Weights wt{packed.data_ptr<uint8_t>(), xq.kp, BLOCK / group_size, block_bytes, row_bytes,
                       _mm512_load_si512(lanes)};
  at::Tensor yt = at::empty({M, N}, at::kFloat);
  float* y = yt.data_ptr<float>();
  auto tiles = [&](auto nt_full, auto mt) {
    constexpr int NT = decltype(nt_full)::value, MT = decltype(mt)::value;
    return [&](int64_t n0, int64_t n1, int64_t m) {
      int64_t n = n0;
      for (; n + NT <= n1; n += NT) int4_tile<NT, MT>(wt, n, xq, m, y, N);
      for (; n < n1; ++n) int4_tile<1, MT>(wt, n, xq, m, y, N);
    };
  };
  for_tiles(M, N, tiles(std::integral_constant<int, 8>{}, std::integral_constant<int, 1>{}),
            tiles(std::integral_constant<int, 4>{}, std::integral_constant<int, 2>{}),
            tiles(std::integral_constant<int, 2>{}, std::integral_constant<int, 4>{}));
  return finish(yt, x, N);
}

// q (N, K) uint8 values 0..15, scale and low fp16 (N, K/G) -> the kernel's flat buffer. Block
// b of a row is 4 loads of 64 bytes, then its scales and lows; byte i of load c holds sub-group
// i/4: low nibble column 8c + i%4, high nibble column 8c + 4 + i%4 (steps 2c and 2c + 1 of the
// sub-group). Padding columns and groups are 0.
at::Tensor pack_int4(at::Tensor q, at::Tensor scale, at::Tensor low, int64_t group_size) {
  TORCH_CHECK(q.scalar_type() == at::kByte && q.dim() == 2, "q must be uint8 (N, K)");
  check_group(group_size);
  q = q.contiguous();
  const int64_t N = q.size(0), K = q.size(1), kp = (K + BLOCK - 1) / BLOCK * BLOCK, groups = K / group_size;
  TORCH_CHECK(K % group_size == 0, "K must be a multiple of the group size");
  for (const auto& t : {scale, low})
    TORCH_CHECK(t.scalar_type() == at::kHalf && t.size(0) == N && t.size(1) == groups, "scale and low: fp16 (N, K/G)");
  const auto sc = scale.contiguous(), lw = low.contiguous();
  const int64_t gpb = BLOCK / group_size, block_bytes = int4_block_bytes(group_size), row_bytes = kp / BLOCK * block_bytes;
  auto out = at::zeros({N * row_bytes + 64}, at::kByte);
  const uint8_t* src = q.data_ptr<uint8_t>();
  const uint16_t *sp = (const uint16_t*)sc.data_ptr<at::Half>(), *lp = (const uint16_t*)lw.data_ptr<at::Half>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      for (int64_t b = 0; b < kp / BLOCK; ++b) {
        uint8_t* blk = dst + n * row_bytes + b * block_bytes;
        for (int c = 0; c < 4; ++c)
          for (int i = 0; i < 64; ++i) {
            const int64_t col = b * BLOCK + (i / 4) * SUB + 8 * c + i % 4;
            const uint8_t lo = col < K ? src[n * K + col] : 0, hi = col + 4 < K ? src[n * K + col + 4] : 0;
            blk[c * 64 + i] = (uint8_t)(lo | (hi << 4));
          }
        uint16_t* scales = (uint16_t*)(blk + BLOCK / 2);
        for (int64_t g = 0; g < gpb && b * gpb + g < groups; ++g) {
          scales[g] = sp[n * groups + b * gpb + g];
          scales[gpb + g] = lp[n * groups + b * gpb + g];
        }
      }
  });
  return out;
}

}  // namespace mskernels
