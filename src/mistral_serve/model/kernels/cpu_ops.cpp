// Per-token ops of a transformer layer, each in one pass instead of 7-14 small PyTorch ops: RMSNorm
// and rotary embeddings (rotate-half layout), for float32 or bfloat16 tensors on the CPU.
//
// Why: at decode a layer's matmuls take about 1.5 ms on the 1B shape, and the small ops around
// them took 0.6 ms more, most of it dispatch and allocation rather than arithmetic.
//
// Numerics follow the PyTorch code they replace (transformer.RMSNorm, rope.apply_rotary), op by
// op: float32 arithmetic, rounded to the tensor's dtype wherever PyTorch rounds (after each
// bf16 multiply and add), so rotary is bit-identical and RMSNorm differs only in the order of
// the sum of squares.
#include "common.h"

namespace mskernels {
namespace {

// float32 -> bf16 bits in the low half of each int32 lane: round to nearest even, NaN kept NaN.
inline I32 bf16_bits(F32 v) {
  const I32 b = as_int(v);
  const I32 lsb = and_(shr32<16>(b), iset32(1));
  return where_nan(v, shr32<16>(add32(b, add32(lsb, iset32(0x7FFF)))), iset32(0x7FC0));
}

inline void store(float* p, F32 v) { fstore(p, v); }
inline void store(at::BFloat16* p, F32 v) { store_u16(p, bf16_bits(v)); }

// v rounded to T, as a PyTorch op whose result is a T tensor rounds it.
inline F32 round_to(F32 v, const float*) { return v; }
inline F32 round_to(F32 v, const at::BFloat16*) { return as_float(shl32<16>(bf16_bits(v))); }

template <typename T>
void rms_norm_rows(const T* x, const T* w, T* y, int64_t N, int64_t D, float eps) {
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* xr = x + n * D;
      T* yr = y + n * D;
      F32 ss = fzero();
      for (int64_t k = 0; k < D; k += L) {
        const F32 v = load(xr + k);
        ss = fmadd(v, v, ss);
      }
      // x * rsqrt(mean(x^2) + eps) in float32, rounded to T, times the weight (rounded again).
      const F32 r = fset(1.f / std::sqrt(fsum(ss) / (float)D + eps));
      for (int64_t k = 0; k < D; k += L) {
        const F32 v = round_to(fmul(load(xr + k), r), xr);
        store(yr + k, fmul(load(w + k), v));
      }
    }
  });
}

// x[n, h, :] (Dh columns, the rest strided) rotated in place by cos[n], sin[n] (each (N, Dh)):
// out = x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1].
template <typename T>
void rotary_rows(T* x, int64_t N, int64_t H, int64_t Dh, int64_t stride_n, int64_t stride_h, const T* cos,
                 const T* sin) {
  const int64_t half = Dh / 2;
  at::parallel_for(0, N * H, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t n = i / H, h = i % H;
      T* p = x + n * stride_n + h * stride_h;
      const T *c = cos + n * Dh, *s = sin + n * Dh;
      for (int64_t j = 0; j < half; j += L) {
        const F32 x1 = load(p + j), x2 = load(p + half + j);
        const F32 a1 = round_to(fmul(x1, load(c + j)), p), b1 = round_to(fmul(x2, load(s + j)), p);
        const F32 a2 = round_to(fmul(x2, load(c + half + j)), p);
        const F32 b2 = round_to(fmul(x1, load(s + half + j)), p);
        store(p + j, fsub(a1, b1));
        store(p + half + j, fadd(a2, b2));
      }
    }
  });
}

void check_dtype(const at::Tensor& t, at::ScalarType dtype, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must have x's dtype");
}

}  // namespace

at::Tensor rms_norm(at::Tensor x, at::Tensor weight, double eps) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, "x must be float32 or bfloat16");
  check_dtype(x, x.scalar_type(), "x");
  check_dtype(weight, x.scalar_type(), "weight");
  const int64_t D = x.size(-1);
  TORCH_CHECK(D % 16 == 0 && weight.numel() == D && weight.is_contiguous(), "weight must be (D,), D a multiple of 16");
  x = x.contiguous();
  auto y = at::empty_like(x);
  const int64_t N = x.numel() / D;
  if (x.scalar_type() == at::kBFloat16)
    rms_norm_rows(x.data_ptr<at::BFloat16>(), weight.data_ptr<at::BFloat16>(), y.data_ptr<at::BFloat16>(), N, D, (float)eps);
  else
    rms_norm_rows(x.data_ptr<float>(), weight.data_ptr<float>(), y.data_ptr<float>(), N, D, (float)eps);
  return y;
}

// x (N, H, Dh) with unit stride along Dh (a view into the fused qkv output is fine), in place.
void rotary_(at::Tensor x, at::Tensor cos, at::Tensor sin) {
  TORCH_CHECK(x.dim() == 3 && x.stride(2) == 1, "x must be (N, H, Dh) with contiguous rows");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, "x must be float32 or bfloat16");
  check_dtype(x, x.scalar_type(), "x");
  const int64_t N = x.size(0), H = x.size(1), Dh = x.size(2);
  TORCH_CHECK(Dh % 32 == 0, "head_dim must be a multiple of 32");
  for (const auto* t : {&cos, &sin}) {
    check_dtype(*t, x.scalar_type(), "cos and sin");
    TORCH_CHECK(t->is_contiguous() && t->size(0) == N && t->size(1) == Dh, "cos and sin must be contiguous (N, Dh)");
  }
  if (x.scalar_type() == at::kBFloat16)
    rotary_rows(x.data_ptr<at::BFloat16>(), N, H, Dh, x.stride(0), x.stride(1), cos.data_ptr<at::BFloat16>(),
                sin.data_ptr<at::BFloat16>());
  else
    rotary_rows(x.data_ptr<float>(), N, H, Dh, x.stride(0), x.stride(1), cos.data_ptr<float>(), sin.data_ptr<float>());
}

}  // namespace mskernels
