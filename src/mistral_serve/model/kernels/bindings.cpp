// The Python module: one entry per kernel (cpu_quant.cpp, cpu_bf16.cpp, cpu_ops.cpp).
#include <torch/extension.h>

namespace mskernels {
torch::Tensor int8_linear(torch::Tensor x, torch::Tensor w, torch::Tensor scale);
torch::Tensor int4_linear(torch::Tensor x, torch::Tensor packed, int64_t N, int64_t K, int64_t group_size);
torch::Tensor pack_int4(torch::Tensor q, torch::Tensor scale, torch::Tensor low, int64_t group_size);
torch::Tensor bf16_linear(torch::Tensor x, torch::Tensor w);
bool has_bf16_linear();
torch::Tensor rms_norm(torch::Tensor x, torch::Tensor weight, double eps);
void rotary_(torch::Tensor x, torch::Tensor cos, torch::Tensor sin);
}  // namespace mskernels

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace mskernels;
  m.def("int8_linear", &int8_linear, "y = x @ (w * scale[:, None]).T, w int8 (N, K)");
  m.def("int4_linear", &int4_linear, "y = x @ W.T for int4 weights packed by pack_int4");
  m.def("pack_int4", &pack_int4, "q uint8 (N, K) 0..15, scale and low fp16 (N, K/G) -> the int4 kernel's buffer");
  m.def("bf16_linear", &bf16_linear, "y = x @ w.T, x and w bfloat16 (w (N, K)), float32 sums");
  m.def("has_bf16_linear", &has_bf16_linear, "whether this build has bf16_linear (the CPU has AVX512-BF16)");
  m.def("rms_norm", &rms_norm, "weight * (x * rsqrt(mean(x^2) + eps)), rounded as transformer.RMSNorm rounds");
  m.def("rotary_", &rotary_, "x (N, H, Dh) = x * cos + rotate_half(x) * sin, in place");
}
