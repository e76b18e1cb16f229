// A transformer block's work around attention, in two native calls instead of about forty Python
// module calls and tensor ops: block_in (RMSNorm, the fused q/k/v matmul, rotary on q and k) and
// block_out (the output projection and residual, RMSNorm, the gate/up matmul, SiLU times up, the
// down matmul and residual). Attention itself stays with the Python backend between the two,
// which owns the KV cache.
//
// Why: at one decode stream on the 1B shape a step took 26 ms, 21 ms of it in the matmuls; most
// of the other 5 ms was Python and ATen dispatch (about 1,500 small ops a step), not arithmetic.
//
// Numerics: the very ops of transformer.Block.forward, called from C++ (the same kernels, in the
// same order, rounding where they round), so both paths give bit-identical results; each works
// row by row, so a row's result never depends on the batch it is in.
#include <ATen/ops/add.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/silu.h>

#include <tuple>

#include "common.h"

namespace mskernels {

at::Tensor int8_linear(at::Tensor x, at::Tensor packed, at::Tensor scale, int64_t N, int64_t K);
at::Tensor int4_linear(at::Tensor x, at::Tensor packed, int64_t N, int64_t K, int64_t group_size);
at::Tensor bf16_linear(at::Tensor x, at::Tensor w);
at::Tensor rms_norm(at::Tensor x, at::Tensor weight, double eps);
void rotary_(at::Tensor x, at::Tensor cos, at::Tensor sin);

// One Linear layer as quant.py / dense.py hand it over (their `native_spec`): which kernel, its
// tensors, N, K and (int4) the group size.
using LinearSpec = std::tuple<int64_t, at::Tensor, at::Tensor, int64_t, int64_t, int64_t>;
enum LinearKind : int64_t { INT8 = 0, INT4 = 1, BF16 = 2 };

namespace {

at::Tensor linear(const LinearSpec& spec, const at::Tensor& x) {
  const auto& [kind, a, b, n, k, group] = spec;
  switch (kind) {
    case INT8: return int8_linear(x, a, b, n, k);  // a: pack_int8's buffer, b: float32 scales (N,)
    case INT4: return int4_linear(x, a, n, k, group);  // a: pack_int4's buffer
    case BF16: return bf16_linear(x, a);  // a: bf16 (N, K)
  }
  TORCH_CHECK(false, "unknown linear kind ", kind);
}

}  // namespace

// x (N, dim) -> qkv (N, (H + 2 KV) D): q and k rotated by cos, sin (N, D) in place, v as computed.
at::Tensor block_in(at::Tensor x, at::Tensor norm_weight, double eps, LinearSpec wqkv, at::Tensor cos,
                    at::Tensor sin, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
  at::Tensor qkv = linear(wqkv, rms_norm(x, norm_weight, eps));
  const int64_t n = qkv.size(0);
  rotary_(qkv.view({n, -1, head_dim}).narrow(1, 0, n_heads + n_kv_heads), cos, sin);
  return qkv;
}

// x (N, dim), attn (N, H D) -> the block's output (N, dim):
// h = x + wo(attn); h + w2(silu(gate) * up) with [gate | up] = w13(ffn_norm(h)).
at::Tensor block_out(at::Tensor x, at::Tensor attn, LinearSpec wo, at::Tensor norm_weight, double eps,
                     LinearSpec w13, LinearSpec w2, int64_t hidden) {
  const at::Tensor h = at::add(x, linear(wo, attn));
  const at::Tensor gate_up = linear(w13, rms_norm(h, norm_weight, eps));
  const at::Tensor act = at::mul(at::silu(gate_up.narrow(-1, 0, hidden)), gate_up.narrow(-1, hidden, hidden));
  return at::add(h, linear(w2, act));
}

}  // namespace mskernels
