// The Python module: one entry per kernel (cpu_int8.cpp, cpu_int4.cpp, cpu_bf16.cpp, cpu_ops.cpp,
// cpu_attention.cpp, cpu_block.cpp), and what this build was compiled for.
// pybind11 with torch's Tensor casters, not all of torch/extension.h: a third of the compile time.
#include <torch/csrc/utils/pybind.h>

#include "simd.h"

namespace mskernels {
at::Tensor int8_linear(at::Tensor x, at::Tensor packed, at::Tensor scale, int64_t N, int64_t K);
at::Tensor pack_int8(at::Tensor q);
at::Tensor int4_linear(at::Tensor x, at::Tensor packed, int64_t N, int64_t K, int64_t group_size);
at::Tensor pack_int4(at::Tensor q, at::Tensor scale, at::Tensor low, int64_t group_size);
at::Tensor bf16_linear(at::Tensor x, at::Tensor w);
const char* bf16_isa();
at::Tensor rms_norm(at::Tensor x, at::Tensor weight, double eps);
void rotary_(at::Tensor x, at::Tensor cos, at::Tensor sin);
using LinearSpec = std::tuple<int64_t, at::Tensor, at::Tensor, int64_t, int64_t, int64_t>;
at::Tensor block_in(at::Tensor x, at::Tensor norm_weight, double eps, LinearSpec wqkv, at::Tensor cos,
                    at::Tensor sin, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim);
at::Tensor block_out(at::Tensor x, at::Tensor attn, LinearSpec wo, at::Tensor norm_weight, double eps,
                     LinearSpec w13, LinearSpec w2, int64_t hidden);
at::Tensor paged_decode_attention(at::Tensor q, at::Tensor k_cache, at::Tensor v_cache, at::Tensor block_tables,
                                  at::Tensor k_start, at::Tensor seq_len, int64_t block_size);

bool has_vnni() {
#ifdef MSK_VNNI
  return true;
#else
  return false;
#endif
}
}  // namespace mskernels

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace mskernels;
  m.def("int8_linear", &int8_linear, "y = x @ (W * scale[:, None]).T for int8 weights W (N, K) packed by pack_int8");
  m.def("pack_int8", &pack_int8, "q int8 (N, K) -> the int8 kernel's buffer");
  m.def("int4_linear", &int4_linear, "y = x @ W.T for int4 weights packed by pack_int4");
  m.def("pack_int4", &pack_int4, "q uint8 (N, K) 0..15, scale and low fp16 (N, K/G) -> the int4 kernel's buffer");
  m.def("bf16_linear", &bf16_linear, "y = x @ w.T, x and w bfloat16 (w (N, K)), float32 sums");
  m.def("rms_norm", &rms_norm, "weight * (x * rsqrt(mean(x^2) + eps)), rounded as transformer.RMSNorm rounds");
  m.def("rotary_", &rotary_, "x (N, H, Dh) = x * cos + rotate_half(x) * sin, in place");
  m.def("paged_decode_attention", &paged_decode_attention,
        "q (B, H, D) attends keys k_start[b] .. seq_len[b] - 1 of the paged k_cache, v_cache (slots, KV, D), read in place");
  m.def("block_in", &block_in, "a block's RMSNorm, q/k/v matmul and rotary: x (N, dim) -> qkv (N, (H + 2 KV) D)");
  m.def("block_out", &block_out, "a block's output projection, residual and MLP: x, attn (N, H D) -> (N, dim)");
  m.def("isa", [] { return std::string(ISA); }, "the vector instructions of this build: AVX-512 or AVX2");
  m.def("has_vnni", &has_vnni, "whether the int8 dot products take one VNNI instruction (vpdpbusd)");
  m.def("bf16_isa", [] { return std::string(bf16_isa()); }, "bf16_linear's instructions: AVX512-BF16, AVX-512 or AVX2");
}
