"""What a benchmark ran on, recorded with every run: the CPU (model, family, cores, the SIMD
flags our kernels and PyTorch's choose by), PyTorch, and the exact command.

A figure means little without its machine: the same kernels ran level with llama.cpp on one
2-core EPYC and at 0.74x on another (issue 18), and which code runs at all depends on the flags
(our kernels need AVX-512 or AVX2, bf16 GEMMs are emulated without AVX512-BF16 or AMX)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

import torch

from ..model.hardware import available_memory, cpu_flags

# The flags that decide which matmul code runs, as /proc/cpuinfo spells them.
X86_SIMD = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
            "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
ARM_SIMD = ("asimd", "asimddp", "sve", "sve2", "bf16", "i8mm")


@dataclass(frozen=True, slots=True)
class MachineRecord:
    cpu_model: str  # "AMD EPYC 9R14" (what /proc/cpuinfo's model name says; clouds often shorten it)
    cpu_id: str  # "AuthenticAMD family 25 model 17 stepping 1": tells CPU generations apart
    cores: int  # physical cores
    threads: int  # hardware threads (logical CPUs)
    usable: int  # logical CPUs this process may run on (a container's share)
    torch_threads: int
    simd: tuple[str, ...]  # the flags of X86_SIMD / ARM_SIMD this CPU has, in that order
    lacks: tuple[str, ...]  # those it lacks
    memory_gib: float
    torch_version: str
    capability: str  # the vector code PyTorch's own kernels chose ("AVX512", "AVX2", ...)
    gpu: str  # "" when none
    command: str
    date: str

    @property
    def summary(self) -> str:
        """One line, for the README's claims: "AMD EPYC (AuthenticAMD family 25 ...), 2 cores, AVX-512 ..."."""
        flags = " ".join(self.simd) or "no SIMD flags read"
        return f"{self.cpu_model} ({self.cpu_id}), {self.cores} cores / {self.threads} threads, {flags}"


def parse_cpuinfo(text: str) -> dict[str, object]:
    """/proc/cpuinfo -> model name, vendor/family/model/stepping, physical cores, logical CPUs
    (missing keys where the file does not say: Arm kernels print other fields)."""
    out: dict[str, object] = {}
    cores: set[tuple[str, str]] = set()
    processors, physical = 0, ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            processors += 1
        elif key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
        elif key in ("model name", "vendor_id", "cpu family", "model", "stepping", "CPU implementer",
                     "CPU part") and key not in out:
            out[key] = value
    out["threads"] = processors
    out["cores"] = len(cores)
    return out


def build_record(cpuinfo: str, flags: frozenset[str], command: str, *, arch: str, cpu_count: int,
                 usable: int, torch_threads: int, memory: int, torch_version: str, capability: str,
                 gpu: str, date: str) -> MachineRecord:
    """The record from what the machine says; pure, so that tests can hand it any machine."""
    info = parse_cpuinfo(cpuinfo)
    names = ARM_SIMD if arch in ("aarch64", "arm64") else X86_SIMD
    if "vendor_id" in info:
        cpu_id = " ".join(f"{label} {info[key]}" if label else str(info[key])
                          for label, key in (("", "vendor_id"), ("family", "cpu family"), ("model", "model"),
                                             ("stepping", "stepping")) if key in info)
    else:
        cpu_id = " ".join(f"{key} {info[key]}" for key in ("CPU implementer", "CPU part") if key in info) or arch
    threads = int(info["threads"]) or cpu_count
    return MachineRecord(
        cpu_model=str(info.get("model name") or platform.processor() or arch), cpu_id=cpu_id,
        cores=int(info["cores"]) or threads, threads=threads, usable=usable, torch_threads=torch_threads,
        simd=tuple(f for f in names if f in flags), lacks=tuple(f for f in names if f not in flags),
        memory_gib=memory / 2**30, torch_version=torch_version, capability=capability, gpu=gpu,
        command=command, date=date)


def machine_record(command: str) -> MachineRecord:
    """This machine, now."""
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    count = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else count
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    return build_record(cpuinfo, cpu_flags(), command, arch=platform.machine(), cpu_count=count, usable=usable,
                        torch_threads=torch.get_num_threads(), memory=available_memory(),
                        torch_version=torch.__version__, capability=torch.backends.cpu.get_cpu_capability(),
                        gpu=gpu, date=time.strftime("%Y-%m-%d"))


def record_lines(r: MachineRecord) -> list[str]:
    """Markdown: the command, then the machine as a two-column table."""
    usable = f" ({r.usable} usable by this process)" if r.usable != r.threads else ""
    return [f"Produced by `{r.command}` on {r.date}.", "",
            f"Machine: {r.summary}.", "",
            "| machine | |", "| --- | --- |",
            f"| CPU | {r.cpu_model} ({r.cpu_id}) |",
            f"| cores / threads | {r.cores} physical cores, {r.threads} hardware threads{usable}; "
            f"PyTorch ran {r.torch_threads} threads |",
            f"| SIMD flags | has: {' '.join(r.simd) or 'none of those below'}; lacks: {' '.join(r.lacks) or 'none'} |",
            f"| memory available | {r.memory_gib:.1f} GiB |",
            f"| PyTorch | {r.torch_version}, CPU capability {r.capability} |",
            f"| GPU | {r.gpu or 'none'} |", ""]
