// The vector width every kernel is written against, chosen by the flags this build is compiled
// with: 512 bits where the compiler may use AVX-512 (F, BW, VL), else 256 bits (AVX2, FMA, F16C).
// kernels/__init__.py compiles the same sources once per width; nothing else in the kernels names
// an instruction set, except where an instruction has no counterpart (AVX512-BF16's vdpbf16ps).
//
// L is the number of float32 (or int32) lanes in a vector, 16 or 8; a vector is 4 * L bytes.
#pragma once
#include <ATen/core/Tensor.h>
#include <immintrin.h>

#include <cstdint>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define MSK_WIDE 1
#elif !(defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
#error "our CPU kernels need AVX-512 (F, BW, VL) or AVX2 with FMA and F16C"
#endif

// int8 dot products in one instruction (vpdpbusd): AVX512-VNNI on the wide build;
// AVX-VNNI on the narrow one, or the EVEX form of the same instructions where the CPU has
// AVX512-VNNI and AVX512VL (how tests reach this path on a CPU without AVX-VNNI).
#if defined(MSK_WIDE) ? defined(__AVX512VNNI__) : (defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__)))
#define MSK_VNNI 1
#endif

namespace mskernels {

#ifdef MSK_WIDE
constexpr int L = 16;
using F32 = __m512;
using I32 = __m512i;  // also 2L x int16 and 4L x int8, as the operation says
constexpr const char* ISA = "AVX-512";
#else
constexpr int L = 8;
using F32 = __m256;
using I32 = __m256i;
constexpr const char* ISA = "AVX2";
#endif
constexpr bool WIDE = L == 16;
constexpr int VBYTES = 4 * L;

#ifdef MSK_WIDE
inline F32 fzero() { return _mm512_setzero_ps(); }
inline F32 fset(float v) { return _mm512_set1_ps(v); }
inline F32 fload(const float* p) { return _mm512_loadu_ps(p); }
inline void fstore(float* p, F32 v) { _mm512_storeu_ps(p, v); }
inline F32 fadd(F32 a, F32 b) { return _mm512_add_ps(a, b); }
inline F32 fsub(F32 a, F32 b) { return _mm512_sub_ps(a, b); }
inline F32 fmul(F32 a, F32 b) { return _mm512_mul_ps(a, b); }
inline F32 fmadd(F32 a, F32 b, F32 c) { return _mm512_fmadd_ps(a, b, c); }
inline F32 vmax(F32 a, F32 b) { return _mm512_max_ps(a, b); }
inline F32 vabs(F32 a) { return _mm512_abs_ps(a); }
inline float fsum(F32 a) { return _mm512_reduce_add_ps(a); }
inline float fmaxof(F32 a) { return _mm512_reduce_max_ps(a); }
inline F32 to_float(I32 a) { return _mm512_cvtepi32_ps(a); }
inline I32 to_int(F32 a) { return _mm512_cvtps_epi32(a); }  // rounds to nearest even
inline F32 fpermute(F32 a, I32 idx) { return _mm512_permutexvar_ps(idx, a); }
inline I32 as_int(F32 a) { return _mm512_castps_si512(a); }  // the same bits
inline F32 as_float(I32 a) { return _mm512_castsi512_ps(a); }
// L fp16 -> float32; L bf16 (the top halves of float32s) -> float32.
inline F32 load_f16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }
inline F32 load_bf16(const void* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}
// NaN lanes of v replaced by `nan`'s lanes.
inline I32 where_nan(F32 v, I32 bits, I32 nan) { return _mm512_mask_mov_epi32(bits, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), nan); }
inline F32 vmin(F32 a, F32 b) { return _mm512_min_ps(a, b); }
// L vectors -> one: lane i = the sum of v[i]'s lanes (a transpose and add: 45 instructions for 16
// sums where 16 fsum calls take about 130). Each sum is added in the same fixed order every call.
inline F32 fsum_each(const F32* v) {
  F32 b[8], c[4];
  for (int k = 0; k < 8; ++k)  // per 128-bit lane: (a0+a2, b0+b2, a1+a3, b1+b3)
    b[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]), _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
  for (int k = 0; k < 4; ++k) {  // per 128-bit lane l: the lane-l sums of v[4k .. 4k+3]
    const __m512d x = _mm512_castps_pd(b[2 * k]), y = _mm512_castps_pd(b[2 * k + 1]);
    c[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  const F32 e0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
  const F32 e1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x88), _mm512_shuffle_f32x4(c[2], c[3], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(e0, e1, 0x88), _mm512_shuffle_f32x4(e0, e1, 0xDD));
}

inline I32 izero() { return _mm512_setzero_si512(); }
inline I32 iload(const void* p) { return _mm512_loadu_si512(p); }
inline I32 iset8(char v) { return _mm512_set1_epi8(v); }
inline I32 iset16(short v) { return _mm512_set1_epi16(v); }
inline I32 iset32(int v) { return _mm512_set1_epi32(v); }
inline I32 add32(I32 a, I32 b) { return _mm512_add_epi32(a, b); }
inline I32 add16(I32 a, I32 b) { return _mm512_add_epi16(a, b); }
inline I32 and_(I32 a, I32 b) { return _mm512_and_si512(a, b); }
inline I32 xor_(I32 a, I32 b) { return _mm512_xor_si512(a, b); }
inline I32 sub32(I32 a, I32 b) { return _mm512_sub_epi32(a, b); }
inline I32 abs8(I32 a) { return _mm512_abs_epi8(a); }  // |-128| is 128 read as unsigned
// a with the sign of b in each int8 lane (0 where b is 0 is not needed: callers multiply by |b|).
inline I32 sign8(I32 a, I32 b) { return _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(b), _mm512_setzero_si512(), a); }
inline I32 unpacklo16(I32 a, I32 b) { return _mm512_unpacklo_epi16(a, b); }  // within 128-bit lanes
inline I32 unpackhi16(I32 a, I32 b) { return _mm512_unpackhi_epi16(a, b); }
template <int S> inline I32 shl16(I32 a) { return _mm512_slli_epi16(a, S); }
template <int S> inline I32 shr16(I32 a) { return _mm512_srli_epi16(a, S); }
template <int S> inline I32 sar16(I32 a) { return _mm512_srai_epi16(a, S); }
template <int S> inline I32 shl32(I32 a) { return _mm512_slli_epi32(a, S); }
template <int S> inline I32 shr32(I32 a) { return _mm512_srli_epi32(a, S); }
inline I32 madd16(I32 a, I32 b) { return _mm512_madd_epi16(a, b); }       // int16 pairs -> int32
inline I32 maddubs(I32 u, I32 s) { return _mm512_maddubs_epi16(u, s); }  // u8 x s8 pairs -> int16
inline int isum(I32 a) { return _mm512_reduce_add_epi32(a); }
inline I32 iload_lanes(const int32_t* p) { return _mm512_loadu_si512(p); }
// L int32 -> L int16 or int8, saturating, stored at p.
inline void store_i16(int16_t* p, I32 a) { _mm256_storeu_si256((__m256i*)p, _mm512_cvtsepi32_epi16(a)); }
inline void store_i8(int8_t* p, I32 a) { _mm_storeu_si128((__m128i*)p, _mm512_cvtsepi32_epi8(a)); }
// The low 16 bits of each int32 lane (all of them < 65536), stored at p.
inline void store_u16(void* p, I32 a) { _mm256_storeu_si256((__m256i*)p, _mm512_cvtepi32_epi16(a)); }
#ifdef MSK_VNNI
// In asm: from the intrinsic, GCC copied every accumulator of an unrolled tile to another
// register and back at each step (two moves per multiply-add, half the int8 prefill rate).
inline I32 dpbusd(I32 acc, I32 u, I32 s) {
  asm("vpdpbusd %[s], %[u], %[acc]" : [acc] "+v"(acc) : [u] "v"(u), [s] "vm"(s));
  return acc;
}
#endif

#else  // 256 bits

inline F32 fzero() { return _mm256_setzero_ps(); }
inline F32 fset(float v) { return _mm256_set1_ps(v); }
inline F32 fload(const float* p) { return _mm256_loadu_ps(p); }
inline void fstore(float* p, F32 v) { _mm256_storeu_ps(p, v); }
inline F32 fadd(F32 a, F32 b) { return _mm256_add_ps(a, b); }
inline F32 fsub(F32 a, F32 b) { return _mm256_sub_ps(a, b); }
inline F32 fmul(F32 a, F32 b) { return _mm256_mul_ps(a, b); }
inline F32 fmadd(F32 a, F32 b, F32 c) { return _mm256_fmadd_ps(a, b, c); }
inline F32 vmax(F32 a, F32 b) { return _mm256_max_ps(a, b); }
inline F32 vabs(F32 a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.f), a); }
// Horizontal sums in a fixed order (halves, then pairs): the same in every call.
inline float fsum(F32 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
inline float fmaxof(F32 a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
inline F32 to_float(I32 a) { return _mm256_cvtepi32_ps(a); }
inline I32 to_int(F32 a) { return _mm256_cvtps_epi32(a); }  // rounds to nearest even
inline F32 fpermute(F32 a, I32 idx) { return _mm256_permutevar8x32_ps(a, idx); }
inline I32 as_int(F32 a) { return _mm256_castps_si256(a); }
inline F32 as_float(I32 a) { return _mm256_castsi256_ps(a); }
inline F32 load_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
inline F32 load_bf16(const void* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}
inline I32 where_nan(F32 v, I32 bits, I32 nan) {
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(bits), _mm256_castsi256_ps(nan),
                                              _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
}
inline F32 vmin(F32 a, F32 b) { return _mm256_min_ps(a, b); }
inline F32 fsum_each(const F32* v) {
  F32 b[4], c[2];
  for (int k = 0; k < 4; ++k)
    b[k] = _mm256_add_ps(_mm256_unpacklo_ps(v[2 * k], v[2 * k + 1]), _mm256_unpackhi_ps(v[2 * k], v[2 * k + 1]));
  for (int k = 0; k < 2; ++k) {
    const __m256d x = _mm256_castps_pd(b[2 * k]), y = _mm256_castps_pd(b[2 * k + 1]);
    c[k] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)), _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)));
  }
  return _mm256_add_ps(_mm256_permute2f128_ps(c[0], c[1], 0x20), _mm256_permute2f128_ps(c[0], c[1], 0x31));
}

inline I32 izero() { return _mm256_setzero_si256(); }
inline I32 iload(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }
inline I32 iset8(char v) { return _mm256_set1_epi8(v); }
inline I32 iset16(short v) { return _mm256_set1_epi16(v); }
inline I32 iset32(int v) { return _mm256_set1_epi32(v); }
inline I32 add32(I32 a, I32 b) { return _mm256_add_epi32(a, b); }
inline I32 add16(I32 a, I32 b) { return _mm256_add_epi16(a, b); }
inline I32 and_(I32 a, I32 b) { return _mm256_and_si256(a, b); }
inline I32 xor_(I32 a, I32 b) { return _mm256_xor_si256(a, b); }
inline I32 sub32(I32 a, I32 b) { return _mm256_sub_epi32(a, b); }
inline I32 abs8(I32 a) { return _mm256_abs_epi8(a); }
inline I32 sign8(I32 a, I32 b) { return _mm256_sign_epi8(a, b); }
inline I32 unpacklo16(I32 a, I32 b) { return _mm256_unpacklo_epi16(a, b); }
inline I32 unpackhi16(I32 a, I32 b) { return _mm256_unpackhi_epi16(a, b); }
template <int S> inline I32 shl16(I32 a) { return _mm256_slli_epi16(a, S); }
template <int S> inline I32 shr16(I32 a) { return _mm256_srli_epi16(a, S); }
template <int S> inline I32 sar16(I32 a) { return _mm256_srai_epi16(a, S); }
template <int S> inline I32 shl32(I32 a) { return _mm256_slli_epi32(a, S); }
template <int S> inline I32 shr32(I32 a) { return _mm256_srli_epi32(a, S); }
inline I32 madd16(I32 a, I32 b) { return _mm256_madd_epi16(a, b); }
inline I32 maddubs(I32 u, I32 s) { return _mm256_maddubs_epi16(u, s); }
inline int isum(I32 a) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 1)));
}
inline I32 iload_lanes(const int32_t* p) { return _mm256_loadu_si256((const __m256i*)p); }
inline __m128i lo128(I32 a) { return _mm256_castsi256_si128(a); }
inline __m128i hi128(I32 a) { return _mm256_extracti128_si256(a, 1); }
inline void store_i16(int16_t* p, I32 a) { _mm_storeu_si128((__m128i*)p, _mm_packs_epi32(lo128(a), hi128(a))); }
inline void store_i8(int8_t* p, I32 a) {
  const __m128i w = _mm_packs_epi32(lo128(a), hi128(a));
  _mm_storel_epi64((__m128i*)p, _mm_packs_epi16(w, w));
}
inline void store_u16(void* p, I32 a) { _mm_storeu_si128((__m128i*)p, _mm_packus_epi32(lo128(a), hi128(a))); }
#if defined(__AVXVNNI__)
inline I32 dpbusd(I32 acc, I32 u, I32 s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
#elif defined(MSK_VNNI)
inline I32 dpbusd(I32 acc, I32 u, I32 s) { return _mm256_dpbusd_epi32(acc, u, s); }
#endif

#endif

// L consecutive float32 or bfloat16 values as float32.
inline F32 load(const float* p) { return fload(p); }
inline F32 load(const at::BFloat16* p) { return load_bf16(p); }

// e^x in each lane, within 2 ulp of float32 (Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, a
// degree-6 polynomial in r, times 2^n). x is clamped to [-87.3, 88.3]: below, the result is the
// smallest normal float (about 1.2e-38), never 0 or a denormal; callers zero lanes they mask.
inline F32 fexp(F32 x) {
  x = vmin(vmax(x, fset(-87.33654f)), fset(88.37626f));
  const F32 n = to_float(to_int(fmul(x, fset(1.44269504088896341f))));
  F32 r = fmadd(n, fset(-0.693359375f), x);
  r = fmadd(n, fset(2.12194440e-4f), r);
  F32 y = fset(1.9875691500e-4f);
  y = fmadd(y, r, fset(1.3981999507e-3f));
  y = fmadd(y, r, fset(8.3334519073e-3f));
  y = fmadd(y, r, fset(4.1665795894e-2f));
  y = fmadd(y, r, fset(1.6666665459e-1f));
  y = fmadd(y, r, fset(5.0000001201e-1f));
  y = fadd(fmadd(y, fmul(r, r), r), fset(1.f));
  return fmul(y, as_float(shl32<23>(add32(to_int(n), iset32(127)))));
}

}  // namespace mskernels
