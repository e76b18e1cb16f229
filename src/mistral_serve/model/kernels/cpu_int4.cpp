// Weight-only int4 matmul for x86 CPUs: y (M, N) = x (M, K) @ W^T, W in a layout made for the
// kernel (pack_int4).
//
// Why: PyTorch's stock CPU kernel (_weight_int4pack_mm_for_cpu) converts every weight to float and
// reaches about a third of the memory bandwidth at decode (M = 1..16 rows).
//
// How: a 512-column block is 16 sub-groups of 32 columns, and int32 lane j of the accumulators
// sums sub-group j (AVX-512: one vector of 16 lanes; AVX2: two of 8), so the group scales apply
// as vectors once per block. w = q * scale + low (q in 0..15, per group), with scale and low kept
// as fp16 (groups of 32 to 512 columns) right after the block's 256 bytes of nibbles, so that each
// row is one stream through memory. The activations are int8 with one scale per sub-group
// (quant_input.h), so a nibble takes one byte multiply-add: vpdpbusd (u8 x s8) with VNNI, else
// vpmaddubsw summed in int16 and widened once per block.
#include "quant_input.h"

namespace mskernels {
namespace {

constexpr int64_t INT4_AHEAD = 8;  // rows ahead to prefetch (8 beat 16 at one row on AVX-512)
constexpr int PARTS = 16 / L;      // vectors per 64-byte step: L sub-groups' 4-byte words each
// Weight rows per tile for 1, 2 and 4 activation rows (two accumulators per output; AVX-512
// has 32 vector registers, AVX2 16).
constexpr int NT1 = WIDE ? 8 : 4, NT2 = WIDE ? 4 : 2, NT4 = WIDE ? 2 : 1;

// Per row and 512-column block: 256 bytes of nibbles, then 512/G fp16 scales, then 512/G fp16
// lows (see pack_int4).
struct Int4Weights {
  const uint8_t* q;
  int64_t groups_per_block, block_bytes, row_bytes;
  int64_t first[PARTS];  // the first group of part p's sub-groups, within the block
  I32 lanes[PARTS];      // sub-group p * L + j -> its group within the block, less first[p]
};

inline int64_t int4_block_bytes(int64_t group_size) { return BLOCK / 2 + 4 * (BLOCK / group_size); }

// acc + u8 x s8 products of 4-byte words. Without VNNI the sums stay int16: a lane takes at most
// 8 vpmaddubsw results per block (each at most 2 * 15 * 127), 30480 < 32767.
inline I32 dot_u8s8(I32 acc, I32 u, I32 s) {
#ifdef MSK_VNNI
  return dpbusd(acc, u, s);
#else
  return add16(acc, maddubs(u, s));
#endif
}
inline I32 widen_sums(I32 acc) {
#ifdef MSK_VNNI
  return acc;
#else
  return madd16(acc, iset16(1));
#endif
}

template <int NT, int MT>
inline void int4_tile(const Int4Weights& wt, int64_t n0, const Int8Rows& x, int64_t m0, float* y, int64_t ldy) {
  F32 facc[NT][MT];
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) facc[n][m] = fzero();
  const I32 nibble = iset8(0x0F);
  const int64_t groups = x.kp / SUB;
  for (int64_t b = 0; b < x.nb; ++b) {
    // Two sums per output: AVX-512, the low and the high nibbles (two dependency chains); AVX2,
    // the two parts of a step (sub-groups 0-7 and 8-15).
    I32 acc[NT][MT][2];
    for (int n = 0; n < NT; ++n)
      for (int m = 0; m < MT; ++m) acc[n][m][0] = acc[n][m][1] = izero();
    // The rows 8 ahead to L2, as in int8_tile, and with them the line of scales after the
    // nibbles: left to the hardware, that line alone halved the read rate.
    const uint8_t* w0 = wt.q + n0 * wt.row_bytes + b * wt.block_bytes;
    for (int n = 0; n < NT; ++n) _mm_prefetch((const char*)(w0 + (n + INT4_AHEAD) * wt.row_bytes + BLOCK / 2), _MM_HINT_T1);
#ifndef MSK_WIDE
    // Kept a loop: unrolled, GCC regroups the int16 sums (exact in any order) so that all 16
    // products of a block are live at once, which spills half the accumulators on AVX2's 16
    // registers (AVX2 int4 reads 1.4x faster so).
#pragma GCC unroll 1
#endif
    for (int c = 0; c < 4; ++c) {
      for (int n = 0; n < NT; ++n) _mm_prefetch((const char*)(w0 + (n + INT4_AHEAD) * wt.row_bytes + c * 64), _MM_HINT_T1);
#pragma GCC unroll 2
      for (int p = 0; p < PARTS; ++p) {
        I32 xv[MT][2];  // steps 2c (low nibbles) and 2c + 1 (high nibbles) of each activation row
        for (int m = 0; m < MT; ++m) {
          const int8_t* xp = x.q.data() + (m0 + m) * x.kp + b * BLOCK + c * 128 + p * VBYTES;
          xv[m][0] = iload(xp);
          xv[m][1] = iload(xp + 64);
        }
#pragma GCC unroll 8
        for (int n = 0; n < NT; ++n) {
          const I32 v = iload(w0 + n * wt.row_bytes + c * 64 + p * VBYTES);
          const I32 q0 = and_(v, nibble), q1 = and_(shr16<4>(v), nibble);
          for (int m = 0; m < MT; ++m) {
            if constexpr (PARTS == 1) {
              acc[n][m][0] = dot_u8s8(acc[n][m][0], q0, xv[m][0]);
              acc[n][m][1] = dot_u8s8(acc[n][m][1], q1, xv[m][1]);
            } else {
              acc[n][m][p] = dot_u8s8(dot_u8s8(acc[n][m][p], q0, xv[m][0]), q1, xv[m][1]);
            }
          }
        }
      }
    }
    for (int n = 0; n < NT; ++n) {
      // L fp16 are read where only the part's groups are used (the buffer has 64 spare bytes at
      // its end for the last block).
      const uint16_t* sp = (const uint16_t*)(wt.q + (n0 + n) * wt.row_bytes + b * wt.block_bytes + BLOCK / 2);
      for (int p = 0; p < PARTS; ++p) {
        const F32 s = fpermute(load_f16(sp + wt.first[p]), wt.lanes[p]);
        const F32 z = fpermute(load_f16(sp + wt.groups_per_block + wt.first[p]), wt.lanes[p]);
        for (int m = 0; m < MT; ++m) {
          // sum_k x_k w_k = sum over sub-groups of sx * scale * sum(xq * q) + low * sum(x).
          const int64_t g = (m0 + m) * groups + b * 16 + p * L;
          const F32 sx = fmul(s, fload(x.scale.data() + g));
          const I32 dot = PARTS == 1 ? add32(widen_sums(acc[n][m][0]), widen_sums(acc[n][m][1]))
                                     : widen_sums(acc[n][m][p]);
          facc[n][m] = fmadd(to_float(dot), sx, facc[n][m]);
          facc[n][m] = fmadd(z, fload(x.sums.data() + g), facc[n][m]);
        }
      }
    }
  }
  for (int n = 0; n < NT; ++n)
    for (int m = 0; m < MT; ++m) y[(m0 + m) * ldy + n0 + n] = fsum(facc[n][m]);
}

void check_group(int64_t group_size) {
  TORCH_CHECK(group_size >= 32 && group_size <= BLOCK && BLOCK % group_size == 0, "group size must divide 512");
}

}  // namespace

at::Tensor int4_linear(at::Tensor x, at::Tensor packed, int64_t N, int64_t K, int64_t group_size) {
  check_input(x, K, 64);
  check_group(group_size);
  x = x.contiguous();
  const int64_t M = x.numel() / K;
  const Int8Rows xq = quantize_input(x, M, K);
  const int64_t block_bytes = int4_block_bytes(group_size), row_bytes = xq.nb * block_bytes;
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.is_contiguous() && packed.numel() == N * row_bytes + 64,
              "packed int4 weight has the wrong size");
  Int4Weights wt{packed.data_ptr<uint8_t>(), BLOCK / group_size, block_bytes, row_bytes, {}, {}};
  for (int p = 0; p < PARTS; ++p) {
    alignas(64) int32_t lanes[L];
    wt.first[p] = p * L * SUB / group_size;
    for (int j = 0; j < L; ++j) lanes[j] = (int32_t)((p * L + j) * SUB / group_size - wt.first[p]);
    wt.lanes[p] = iload_lanes(lanes);
  }
  at::Tensor yt = at::empty({M, N}, at::kFloat);
  float* y = yt.data_ptr<float>();
  for_tiles<NT1, NT2, NT4>(M, N, [&]<int NT, int MT>(int64_t n, int64_t m) { int4_tile<NT, MT>(wt, n, xq, m, y, N); });
  return finish(yt, x, N);
}

// q (N, K) uint8 values 0..15, scale and low fp16 (N, K/G) -> the kernel's flat buffer, the same
// for both vector widths. Block b of a row is 4 steps of 64 bytes, then its scales and lows; byte
// i of step c holds sub-group i/4: low nibble column 8c + i%4, high nibble column 8c + 4 + i%4
// (steps 2c and 2c + 1 of the sub-group). Padding columns and groups are 0.
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
