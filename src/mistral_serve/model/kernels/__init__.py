"""Our own CPU kernels, compiled on first use: the quantized matmuls (cpu_int8.cpp, cpu_int4.cpp),
a bf16 matmul (cpu_bf16.cpp), RMSNorm and rotary embeddings in one pass each (cpu_ops.cpp), decode
attention reading the paged KV cache in place (cpu_attention.cpp), and a transformer block's work
around attention in two calls (cpu_block.cpp).

The same C++ sources build for two vector widths (simd.h): the AVX-512 build where the CPU has
AVX512F/BW/VL (compiled with `-march=native`, so it uses what this CPU has: VNNI, BF16), else the
AVX2 build where it has AVX2, FMA and F16C (compiled with those flags only, and AVX-VNNI where
the CPU has it, so that it holds no AVX-512 instruction whatever CPU builds it). Each is built
once per machine with the compiler at hand into torch's extension cache, under a name that carries
the variant, and loaded from there afterwards. Where neither can be built (an older CPU, no C++
compiler), the layers use PyTorch's stock kernels instead (also with `--cpu-kernels stock`); all
give the same numbers to within rounding.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..hardware import cpu_flags

log = logging.getLogger(__name__)

FOLDER = Path(__file__).parent
SOURCES = [FOLDER / name for name in ("bindings.cpp", "cpu_int8.cpp", "cpu_int4.cpp", "cpu_bf16.cpp", "cpu_ops.cpp",
                                      "cpu_attention.cpp", "cpu_block.cpp")]
# The kinds of Linear layer that cpu_block.cpp runs (its LinearKind), in the specs the layers give.
NATIVE_INT8, NATIVE_INT4, NATIVE_BF16 = 0, 1, 2
HEADERS = [FOLDER / name for name in ("simd.h", "common.h", "quant_input.h")]


@dataclass(frozen=True, slots=True)
class Variant:
    """One build of the kernels: the CPU flags (as /proc/cpuinfo names them) it needs to run, the
    compiler flags that choose its instructions, and optional extras taken where the CPU has them."""

    name: str
    needs: frozenset[str]
    isa_flags: tuple[str, ...]
    extras: tuple[tuple[str, str], ...] = ()  # (CPU flag, compiler flag)

    def cflags(self, flags: frozenset[str]) -> list[str]:
        return [*self.isa_flags, *(option for flag, option in self.extras if flag in flags)]


# In order of preference. -mtune only schedules instructions, it never adds any.
VARIANTS = {
    "avx512": Variant("avx512", frozenset({"avx512f", "avx512bw", "avx512vl", "f16c", "fma"}), ("-march=native",)),
    "avx2": Variant("avx2", frozenset({"avx2", "fma", "f16c"}), ("-mavx2", "-mfma", "-mf16c", "-mtune=native"),
                    extras=(("avx_vnni", "-mavxvnni"),)),
}


def unavailable_reason(variant: str | None = None) -> str | None:
    """Why our CPU kernels (the named variant, or any) cannot be used here, or None when they can."""
    if variant is not None and variant not in VARIANTS:
        return f"no kernel variant {variant!r} (there are {', '.join(VARIANTS)})"
    flags = cpu_flags()
    wanted = [VARIANTS[variant]] if variant else list(VARIANTS.values())
    if not any(v.needs <= flags for v in wanted):
        missing = wanted[-1].needs - flags  # the least demanding one's
        return f"the CPU lacks {', '.join(sorted(missing))}"
    if not (shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")):
        return "no C++ compiler (install g++)"
    return None


def default_variant() -> Variant | None:
    """The variant this CPU runs: the first one whose flags it has."""
    flags = cpu_flags()
    return next((v for v in VARIANTS.values() if v.needs <= flags), None)


# What `--cpu-kernels` may say: auto (the widest build this CPU runs), stock (PyTorch's kernels
# only: nothing of ours is built or loaded), or one build by name.
CHOICES = ("auto", "stock", *VARIANTS)


def kernels_for(choice: str) -> ModuleType | None:
    """The compiled module a model loaded with `--cpu-kernels choice` runs, or None (stock, or
    no build of ours can run here)."""
    if choice not in CHOICES:
        raise ValueError(f"--cpu-kernels must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "stock":
        return None
    return cpu_kernels(None if choice == "auto" else choice)


def cpu_kernels(variant: str | None = None) -> ModuleType | None:
    """The compiled module for this CPU (the widest build that runs here and compiles), or for the
    named variant ("avx512", "avx2": for tests and the benchmark), or None (with a log line
    saying why) where none can be had."""
    if variant is not None:
        return _module(variant)
    runnable = [v.name for v in VARIANTS.values() if v.needs <= cpu_flags()]
    for name in runnable:
        if (module := _module(name)) is not None:
            return module
    return None if runnable else _module(None)


@functools.cache
def _module(variant: str | None) -> ModuleType | None:
    reason = unavailable_reason(variant)
    if reason is None:
        try:
            return _build(VARIANTS[variant])
        except Exception as err:  # a failed build must never stop the server: fall back
            text = str(err).strip()
            reason = f"building {FOLDER.name}/*.cpp failed: {text.splitlines()[-1] if text else repr(err)}"
    if variant is None:
        log.info("our CPU kernels are not used (%s): PyTorch's stock kernels run instead", reason)
    else:
        log.info("our CPU kernels' %s build is not used (%s)", variant, reason)
    return None


def _build(variant: Variant, extra_cflags: tuple[str, ...] = ()) -> ModuleType:
    """Compiles (or loads from torch's cache) one variant; `extra_cflags` only for tests."""
    from torch.utils import cpp_extension

    # -fopenmp: at::parallel_for is OpenMP code inlined from the headers; without it the kernel
    # runs on one thread. The libgomp it links is the one torch has loaded already (same soname).
    # -ffp-contract=off: a multiply and an add stay two roundings, as in the PyTorch code that
    # cpu_ops.cpp matches bit for bit (GCC would fuse them into one FMA by default).
    # -fvisibility=hidden: two variants loaded in one process (tests, the benchmark) keep their
    # own symbols.
    # The name carries the sources, the flags and the CPU's features: -march=native code built on
    # one CPU must never be loaded on another that lacks an instruction it uses.
    flags = cpu_flags()
    cflags = ["-O3", *variant.cflags(flags), *extra_cflags, "-fopenmp", "-ffp-contract=off", "-fvisibility=hidden"]
    code = b"".join(path.read_bytes() for path in SOURCES + HEADERS)
    # The torch and Python versions too: the build links against their ABIs, and the build folder
    # (torch's default root, without its per-Python subfolder) is shared by every environment.
    abi = f"{torch_version()} {sys.version_info[:2]}"
    digest = hashlib.sha256(code + " ".join(cflags + sorted(flags) + [abi]).encode()).hexdigest()[:12]
    name = f"mistral_serve_cpu_kernels_{variant.name}_{digest}"
    folder = Path(cpp_extension.get_default_build_root()) / name
    sources = build_sources(folder)
    clear_stale_lock(folder)
    log.info("compiling our CPU kernels for %s (once per machine, a minute or two)", variant.name)
    return cpp_extension.load(name, sources, extra_cflags=cflags, extra_ldflags=["-fopenmp"],
                              build_directory=str(folder), verbose=False)


def torch_version() -> str:
    import torch

    return torch.__version__


# A build takes a few minutes at most; a lock older than this was left by a build that was killed.
STALE_LOCK_S = 15 * 60


def build_sources(folder: Path) -> list[str]:
    """The sources, copied into the build folder, and their paths there. torch rebuilds an
    extension whenever the paths in its build file change, so two checkouts of the same code (a
    second clone, a worktree, a site-packages copy) would otherwise rebuild each other's build
    of one name, each waiting on the other's lock; the copies make the paths follow the content."""
    target = folder / "src"
    target.mkdir(parents=True, exist_ok=True)
    for path in SOURCES + HEADERS:
        copy, code = target / path.name, path.read_bytes()
        if not copy.is_file() or copy.read_bytes() != code:
            partial = copy.with_suffix(copy.suffix + f".{os.getpid()}")
            partial.write_bytes(code)
            partial.replace(copy)  # atomic: a concurrent build reads the old file or the new one
    return [str(target / path.name) for path in SOURCES]


def clear_stale_lock(folder: Path, max_age_s: float = STALE_LOCK_S) -> bool:
    """Remove the lock file a killed build left (torch's build waits on it forever, so the server
    would never finish loading); a lock younger than `max_age_s` may be a build in progress."""
    lock = folder / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age < max_age_s:
        return False
    log.warning("removing %s, left %.0f minutes ago by a kernel build that did not finish", lock, age / 60)
    lock.unlink(missing_ok=True)
    return True
