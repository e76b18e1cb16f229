"""Choosing the device and compute dtype for the machine at hand."""

from __future__ import annotations

import functools
import logging
import os
import platform
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to PyTorch "
                         f"(torch {torch.__version__}; the CPU build has no CUDA)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where it cannot be read)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in info.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return frozenset(flags)


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16, AMX, or Arm's BF16 extension).
    Without it PyTorch emulates bf16 GEMMs at a small fraction of fp32 speed (see FACTS.md)."""
    flags = cpu_flags()
    if not flags:
        return platform.machine() == "arm64"  # Apple silicon has native bf16
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def available_memory() -> int:
    """Bytes of memory a new allocation can take now (MemAvailable), or total RAM as a fallback."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resolve_dtype(name: str, device: torch.device, n_params: int) -> torch.dtype:
    """`auto`: bf16 on GPUs that support it (else fp16); on CPUs, bf16 only where it is native,
    otherwise fp32, unless fp32 weights would not fit in memory, where bf16 is the only way to
    load the model at all (slow: prefer --quantize int8)."""
    if name != "auto":
        if name not in DTYPES:
            raise ValueError(f"--dtype must be auto, {', '.join(DTYPES)}, got {name!r}")
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_has_native_bf16():
        return torch.bfloat16
    need, have = 4 * n_params, available_memory()
    if need > 0.9 * have:
        log.warning("float32 weights need %.1f GB but %.1f GB is available: computing in bfloat16, "
                    "which this CPU emulates slowly; --quantize int8 is faster", need / 1e9, have / 1e9)
        return torch.bfloat16
    return torch.float32


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (containers
    often see every host core but may use only a few; too many threads then thrash)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def configure_threads() -> int:
    """One intra-op thread per usable CPU, unless OMP_NUM_THREADS says otherwise."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = usable_cpus()
    torch.set_num_threads(threads)
    return threads
