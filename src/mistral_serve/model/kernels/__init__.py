"""Our own CPU kernels, compiled on first use: the quantized matmuls (cpu_quant.cpp), a bf16
matmul (cpu_bf16.cpp, where the CPU has AVX512-BF16), and RMSNorm and
rotary embeddings in one pass each (cpu_ops.cpp).

The C++ sources are built once per machine with the compiler at hand (`-march=native`, so it uses
what this CPU has) into torch's extension cache, and loaded from there afterwards. Where it cannot
be built (no AVX-512, no C++ compiler), the quantized layers use PyTorch's stock kernels instead
(also with `--cpu-kernels stock`); both give the same numbers to within rounding.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
from pathlib import Path
from types import ModuleType

from ..hardware import cpu_flags

log = logging.getLogger(__name__)

FOLDER = Path(__file__).parent
SOURCES = [FOLDER / name for name in ("bindings.cpp", "cpu_quant.cpp", "cpu_bf16.cpp", "cpu_ops.cpp")]
HEADERS = [FOLDER / "common.h"]
REQUIRED_FLAGS = {"avx512f", "avx512bw", "avx512vl", "f16c", "fma"}


def unavailable_reason() -> str | None:
    """Why our CPU kernels cannot be used here, or None when they can."""
    missing = REQUIRED_FLAGS - cpu_flags()
    if missing:
        return f"the CPU lacks {', '.join(sorted(missing))}"
    if not (shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")):
        return "no C++ compiler (install g++)"
    return None


@functools.cache
def cpu_kernels() -> ModuleType | None:
    """The compiled module, or None (with one log line saying why) where it cannot be had."""
    reason = unavailable_reason()
    if reason is None:
        try:
            return _build()
        except Exception as err:  # a failed build must never stop the server: fall back
            reason = f"building {FOLDER.name}/*.cpp failed: {str(err).strip().splitlines()[-1] if str(err).strip() else err!r}"
    log.info("quantized matmuls use PyTorch's stock CPU kernels (%s)", reason)
    return None


def _build() -> ModuleType:
    from torch.utils import cpp_extension

    # -fopenmp: at::parallel_for is OpenMP code inlined from the headers; without it the kernel
    # runs on one thread. The libgomp it links is the one torch has loaded already (same soname).
    # -ffp-contract=off: a multiply and an add stay two roundings, as in the PyTorch code that
    # cpu_ops.cpp matches bit for bit (GCC would fuse them into one FMA by default).
    # The name carries the sources, the flags and the CPU's features: -march=native code built on
    # one CPU must never be loaded on another that lacks an instruction it uses.
    cflags = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off"]
    code = b"".join(path.read_bytes() for path in SOURCES + HEADERS)
    digest = hashlib.sha256(code + " ".join(cflags + sorted(cpu_flags())).encode()).hexdigest()[:12]
    name = f"mistral_serve_cpu_kernels_{digest}"
    log.info("compiling our CPU kernels (once per machine, about a minute)")
    return cpp_extension.load(name, [str(path) for path in SOURCES], extra_cflags=cflags,
                             extra_ldflags=["-fopenmp"], verbose=False)
