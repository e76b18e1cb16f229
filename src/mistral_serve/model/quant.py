"""Weight-only quantization: int8 per output channel, int4 per group, applied at load time.

Weights are quantized one tensor at a time as the loader reads them, so the float model never
exists whole in memory. Activations stay in floating point; each Linear's matmul runs in the
fastest kernel we have for the device:
- int8 and int4, CPU with AVX-512 or AVX2 (+FMA, F16C): our own kernels (kernels/cpu_int8.cpp,
  cpu_int4.cpp, compiled on first use for the CPU's vector width), about twice as fast as the
  stock ones at decode;
- int8, other CPUs: aten._weight_int8pack_mm (x @ (q * scale).T with q int8 (N, K), scale (N,));
- int4, other CPUs: aten._weight_int4pack_mm_for_cpu (tinygemm layout, groups along K);
- int4, CUDA: aten._weight_int4pack_mm (bf16 activations);
- int8, CUDA: dequantize-then-matmul (no stock weight-only int8 GEMM; unmeasured here).
Unquantized bf16 models on CPU take dense.Bf16Linear, which has a kernel of ours too.

int4 uses tinygemm's asymmetric convention: for each group of `group_size` input columns,
scale = (max - min) / 15, zero = min + 8 * scale, q = round((w - min) / scale) in [0, 15],
so w ~ (q - 8) * scale + zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dense import Bf16Linear
from .kernels import CHOICES, NATIVE_INT4, NATIVE_INT8, kernels_for

MODES = ("none", "int8", "int4")


@dataclass(frozen=True, slots=True)
class QuantConfig:
    mode: str = "none"  # none | int8 | int4
    group_size: int = 32  # int4 only: 32 or 128 input columns share a scale and zero
    # CPU kernels: "auto" = ours where the CPU has AVX-512 or AVX2, else PyTorch's; "stock" = PyTorch's;
    # "avx512" / "avx2" = that build of ours (where the CPU runs it, else PyTorch's).
    # Not part of equality: it changes how a checkpoint runs, not what it holds.
    kernels: str = field(default="auto", compare=False)

    def __post_init__(self) -> None:
        if self.kernels not in CHOICES:
            raise ValueError(f"--cpu-kernels must be one of {', '.join(CHOICES)}, got {self.kernels!r}")
        if self.mode not in MODES:
            raise ValueError(f"--quantize must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.group_size not in (32, 64, 128, 256):
            raise ValueError(f"group size must be 32, 64, 128 or 256, got {self.group_size}")

    @property
    def label(self) -> str:
        return {"none": "none", "int8": "int8 (weight-only, per channel)",
                "int4": f"int4 (weight-only, group {self.group_size})"}[self.mode]


def quantize_int8(w: Tensor) -> tuple[Tensor, Tensor]:
    """w (N, K) float -> (q int8 (N, K), scale float32 (N,)), symmetric per output row."""
    w = w.float()
    scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    # One float32 temporary (rounded in place): a 7B gate/up matrix is 470 MB in float32.
    t = w / scale[:, None]
    q = t.round_().clamp_(-128, 127).to(torch.int8)
    return q, scale


def quantize_int4(w: Tensor, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """w (N, K) float -> (q uint8 (N, K) in [0, 15], scale (N, K/g), zero (N, K/g)) float32."""
    n, k = w.shape
    groups = w.float().reshape(n, k // group_size, group_size)
    lo, hi = groups.amin(dim=-1), groups.amax(dim=-1)
    scale = ((hi - lo) / 15.0).clamp(min=1e-8)
    zero = lo + 8.0 * scale
    t = groups - lo[..., None]  # one float32 temporary, rounded in place
    q = t.div_(scale[..., None]).round_().clamp_(0, 15).to(torch.uint8)
    return q.reshape(n, k), scale, zero


def pack_pairs(q: Tensor) -> Tensor:
    """(N, K) 4-bit values -> (N, K/2) bytes, even column in the high nibble."""
    return (q[:, ::2] << 4 | q[:, 1::2]).contiguous()


def unpack_pairs(packed: Tensor) -> Tensor:
    """Inverse of pack_pairs."""
    return torch.stack([packed >> 4, packed & 0x0F], dim=-1).reshape(packed.shape[0], -1)


def dequantize_int4(q: Tensor, scale: Tensor, zero: Tensor, group_size: int) -> Tensor:
    n, k = q.shape
    groups = q.reshape(n, k // group_size, group_size).float() - 8.0
    return (groups * scale[..., None] + zero[..., None]).reshape(n, k)


class Int8Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, act_dtype: torch.dtype, kernel_choice: str = "auto") -> None:
        super().__init__()
        self.in_features, self.out_features, self.act_dtype = in_features, out_features, act_dtype
        self.kernel_choice = kernel_choice  # --cpu-kernels
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.empty(out_features, dtype=act_dtype))
        self.kernels = None  # our compiled CPU kernels, when set_quantized found them usable

    def set_weight(self, w: Tensor) -> None:
        self.set_quantized(*quantize_int8(w))

    def set_quantized(self, q: Tensor, scale: Tensor) -> None:
        """q int8 (N, K), scale (N,), on the target device."""
        self.kernels = usable_kernels(q.device, self.in_features, self.kernel_choice)
        # Our kernel reads its own layout (pack_int8: the same bytes, reordered and offset).
        self.weight = self.kernels.pack_int8(q) if self.kernels is not None else q
        # Our kernel takes float32 scales (exact); the stock one the activations' dtype.
        self.scale = scale.float() if self.kernels is not None else scale.to(self.act_dtype)

    def native_spec(self, x: Tensor) -> tuple | None:
        """(kind, tensors, N, K, group) for kernels/cpu_block.cpp, when our kernel runs this layer."""
        if self.kernels is None or x.dtype not in (torch.float32, torch.bfloat16):
            return None
        return NATIVE_INT8, self.weight, self.scale, self.out_features, self.in_features, 0

    def forward(self, x: Tensor) -> Tensor:
        if self.kernels is not None:
            return self.kernels.int8_linear(kernel_input(x), self.weight, self.scale, self.out_features,
                                            self.in_features).to(x.dtype)
        if x.device.type == "cpu":
            return torch.ops.aten._weight_int8pack_mm(x.to(self.act_dtype), self.weight, self.scale).to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype)) * self.scale.to(x.dtype)


class Int4Linear(nn.Module):
    INNER_K_TILES = 8

    def __init__(self, in_features: int, out_features: int, group_size: int, act_dtype: torch.dtype,
                 kernel_choice: str = "auto") -> None:
        super().__init__()
        self.kernel_choice = kernel_choice  # --cpu-kernels
        if in_features % group_size:
            raise ValueError(f"int4 needs in_features ({in_features}) divisible by the group size ({group_size})")
        self.in_features, self.out_features = in_features, out_features
        self.group_size, self.act_dtype = group_size, act_dtype
        self.register_buffer("weight", torch.empty(0, dtype=torch.uint8))
        self.register_buffer("scales_and_zeros", torch.empty(0, dtype=act_dtype))
        self.kernels = None  # our compiled CPU kernels, when set_quantized found them usable
        # Set when neither our kernel nor tinygemm takes this shape (tinygemm needs K % 128,
        # e.g. SmolLM2's dim 576 on a CPU without our kernels): the int4 values dequantized, (N, K).
        self.dense: Tensor | None = None

    def set_weight(self, w: Tensor) -> None:
        self.set_quantized(*quantize_int4(w, self.group_size))

    def set_quantized(self, q: Tensor, scale: Tensor, zero: Tensor | None = None, *,
                      low: Tensor | None = None) -> None:
        """q uint8 (N, K) in [0, 15], scale and either zero or low (N, K/g), on the target
        device; packed here into the layout of the device's kernel.

        w = (q - 8) * scale + zero = q * scale + low. GGUF's Q4_0 (low = -8 * d) and Q4_1
        (low = m) come as `low` with fp16 values, which our kernel stores exactly."""
        if (zero is None) == (low is None):
            raise ValueError("set_quantized takes exactly one of zero and low")
        self.kernels = usable_kernels(q.device, self.in_features, self.kernel_choice)
        self.dense = None
        if self.kernels is not None:
            # One flat buffer: nibbles with each block's fp16 scales and lows (w = q * scale + low).
            low = (zero - 8.0 * scale if low is None else low).half()
            self.weight = self.kernels.pack_int4(q.to(torch.uint8), scale.half(), low, self.group_size)
            self.scales_and_zeros = torch.empty(0, dtype=torch.float16)
            return
        if zero is None:
            zero = low.float() + 8.0 * scale.float()
        if self.in_features % (self.INNER_K_TILES * 16):
            self.dense = dequantize_int4(q, scale.float(), zero.float(), self.group_size).to(self.act_dtype)
            self.weight = torch.empty(0, dtype=torch.uint8, device=q.device)
            return
        # (K/g, N, 2): the layout tinygemm reads.
        sz = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(self.act_dtype)
        if q.device.type == "cpu":
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), self.INNER_K_TILES)
        else:
            packed = torch.ops.aten._convert_weight_to_int4pack(pack_pairs(q), self.INNER_K_TILES)
        self.weight, self.scales_and_zeros = packed, sz

    def native_spec(self, x: Tensor) -> tuple | None:
        """(kind, tensors, N, K, group) for kernels/cpu_block.cpp, when our kernel runs this layer."""
        if self.kernels is None or x.dtype not in (torch.float32, torch.bfloat16):
            return None
        return NATIVE_INT4, self.weight, self.scales_and_zeros, self.out_features, self.in_features, self.group_size

    def forward(self, x: Tensor) -> Tensor:
        if self.kernels is not None:
            return self.kernels.int4_linear(kernel_input(x), self.weight, self.out_features, self.in_features,
                                            self.group_size).to(x.dtype)
        if self.dense is not None:
            return F.linear(x.to(self.act_dtype), self.dense).to(x.dtype)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).to(self.act_dtype)
        if x.device.type == "cpu":
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.weight, self.group_size, self.scales_and_zeros)
        else:
            y = torch.ops.aten._weight_int4pack_mm(x2, self.weight, self.group_size, self.scales_and_zeros)
        return y.reshape(*lead, self.out_features).to(x.dtype)


def usable_kernels(device: torch.device, in_features: int, choice: str = "auto"):
    """Our compiled CPU kernels (of the `--cpu-kernels` choice) when they can run this layer (CPU,
    K a multiple of 64), else None."""
    if choice == "stock" or device.type != "cpu" or in_features % 64:
        return None
    return kernels_for(choice)


def kernel_input(x: Tensor) -> Tensor:
    """Our kernels read float32 or bfloat16 activations."""
    return x if x.dtype in (torch.float32, torch.bfloat16) else x.float()


def matmul_kernels(model: nn.Module) -> str:
    """Which kernels the model's Linear layers run on here, for logs and benchmark reports, e.g.
    "quantized: mistral-serve AVX2" (the build's vector instructions: AVX-512 or AVX2)."""
    names = set()
    for module in model.modules():
        if isinstance(module, (Int8Linear, Int4Linear)):
            names.add(f"quantized: mistral-serve {module.kernels.isa()}" if module.kernels is not None
                      else "quantized: PyTorch stock")
        elif isinstance(module, Bf16Linear) and module.kernels is not None:
            names.add(f"bf16: mistral-serve {module.kernels.bf16_isa()}")
    return "; ".join(sorted(names)) or "PyTorch"


def activation_dtype(device: torch.device, compute: torch.dtype) -> torch.dtype:
    """The stock int kernels are fastest with bf16 activations (CPU int8's AVX2/AVX512 paths and
    CUDA's tinygemm only take bf16); elsewhere the compute dtype is kept."""
    return torch.bfloat16 if compute in (torch.bfloat16, torch.float32) else compute


def swap_linears(model: nn.Module, config: QuantConfig, compute: torch.dtype, device: torch.device,
                 modes: Callable[[str], str] | None = None) -> None:
    """Replace the transformer's big Linear layers (on the meta device) by quantized ones, or by
    Bf16Linear where the model runs unquantized in bf16 on a CPU with our kernels.
    The output layer is int8 in both modes: int4 logits cost too much quality (llama.cpp also
    keeps it at higher precision); embeddings stay in floating point (a lookup, not a GEMM).

    `modes`, when given, picks the mode of each layer by its name ("layers.0.attention.wqkv")
    instead of `config.mode`: a GGUF file mixes types (Q4_K_M keeps some matrices in Q6_K)."""
    own = config.kernels != "stock"
    bf16_dense = own and compute == torch.bfloat16 and device.type == "cpu"
    if config.mode == "none" and modes is None and not bf16_dense:
        return
    act = activation_dtype(device, compute)
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear) or isinstance(child, Bf16Linear) or child.bias is not None:
                continue
            is_output = parent is model and name == "output"
            mode = modes(f"{parent_name}.{name}".lstrip(".")) if modes else config.mode
            if mode == "none":
                if not bf16_dense:
                    continue
                new: nn.Module = Bf16Linear(child.in_features, child.out_features, child.weight.device, config.kernels)
            elif mode == "int8" or is_output:
                new = Int8Linear(child.in_features, child.out_features, act, config.kernels)
            else:
                new = Int4Linear(child.in_features, child.out_features, config.group_size, act, config.kernels)
            setattr(parent, name, new)
