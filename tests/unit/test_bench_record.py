"""The bench report's record of the machine it ran on: CPU model and generation, cores, the SIMD
flags that decide which kernels run, PyTorch, and the exact command."""

from mistral_serve.bench.machine import build_record, machine_record, parse_cpuinfo, record_lines
from mistral_serve.model.hardware import cpu_flags

# Two cores with two hardware threads each, as /proc/cpuinfo lists them (fields trimmed).
CPUINFO = "\n\n".join(
    f"processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
    f"model name\t: AMD EPYC 9R45\nstepping\t: 1\nphysical id\t: 0\ncore id\t\t: {i // 2}\n"
    "flags\t\t: fpu avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx_vnni"
    for i in range(4))
FLAGS = frozenset("fpu avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx_vnni".split())


def _record(cpuinfo=CPUINFO, flags=FLAGS, arch="x86_64", usable=4):
    return build_record(cpuinfo, flags, "mistral-serve bench --shapes mistral-1b", arch=arch, cpu_count=4,
                        usable=usable, torch_threads=2, memory=16 * 2**30, torch_version="2.13.0+cpu",
                        capability="AVX512", gpu="", date="2026-12-03")


def test_cpuinfo_gives_the_model_its_generation_and_physical_cores():
    info = parse_cpuinfo(CPUINFO)
    assert info["model name"] == "AMD EPYC 9R45" and info["cpu family"] == "26"
    assert (info["cores"], info["threads"]) == (2, 4)


def test_the_record_names_the_flags_it_has_and_those_it_lacks():
    r = _record()
    assert r.cpu_id == "AuthenticAMD family 26 model 2 stepping 1"
    assert (r.cores, r.threads) == (2, 4)
    assert r.simd == ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                      "avx_vnni")
    assert r.lacks == ("amx_tile", "amx_int8", "amx_bf16")
    avx2_only = _record(flags=frozenset({"avx2", "fma", "f16c"}))
    assert "avx512f" in avx2_only.lacks and avx2_only.simd == ("avx2", "fma", "f16c")


def test_the_report_lines_carry_command_cpu_flags_and_torch():
    text = "\n".join(record_lines(_record(usable=2)))
    assert "Produced by `mistral-serve bench --shapes mistral-1b` on 2026-12-03." in text
    assert "| CPU | AMD EPYC 9R45 (AuthenticAMD family 26 model 2 stepping 1) |" in text
    assert "2 physical cores, 4 hardware threads (2 usable by this process); PyTorch ran 2 threads" in text
    assert "has: avx2 fma f16c avx512f" in text and "lacks: amx_tile amx_int8 amx_bf16" in text
    assert "| PyTorch | 2.13.0+cpu, CPU capability AVX512 |" in text
    assert "Machine: AMD EPYC 9R45 (AuthenticAMD family 26" in text  # the one-line form, for the README


def test_an_arm_machine_is_judged_by_arm_flags():
    cpuinfo = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\nFeatures\t: fp asimd sve bf16\n"
    r = _record(cpuinfo, frozenset({"fp", "asimd", "sve", "bf16"}), arch="aarch64")
    assert r.simd == ("asimd", "sve", "bf16") and "i8mm" in r.lacks and "avx2" not in r.lacks
    assert r.cpu_id == "CPU implementer 0x41 CPU part 0xd40" and r.cores == 1


def test_this_machine_is_recorded():
    r = machine_record("mistral-serve bench")
    assert r.threads >= r.cores >= 1 and r.torch_threads >= 1 and r.torch_version
    assert set(r.simd) <= cpu_flags() and not set(r.lacks) & cpu_flags()


def test_every_report_starts_with_the_record(tmp_path):
    from mistral_serve.bench.run import run_bench
    from mistral_serve.config import BenchConfig

    text = run_bench([], BenchConfig(suites=()), tmp_path / "B.md", "mistral-serve bench --suites ''")
    assert text.startswith("# Benchmarks\n\nProduced by `mistral-serve bench --suites ''` on ")
    assert "| SIMD flags | has: " in text and (tmp_path / "B.md").read_text() == text


class _Stop(Exception):
    pass


def test_the_kernel_suite_builds_nothing_when_every_model_runs_stock(monkeypatch):
    import pytest

    from mistral_serve.bench import run
    from mistral_serve.config import BenchConfig, ModelConfig

    def build(report):
        raise AssertionError("the kernel suite ran under --cpu-kernels stock")

    def stop(cfg):
        raise _Stop  # the suite is done by the time the first model loads

    monkeypatch.setattr(run, "kernels_section", build)
    monkeypatch.setattr(run, "load", stop)
    with pytest.raises(_Stop):
        run.run_bench([("demo", ModelConfig(cpu_kernels="stock"))], BenchConfig(suites=("kernels",)), None, "x")
    with pytest.raises(AssertionError, match="kernel suite ran"):  # auto: it runs
        run.run_bench([("demo", ModelConfig())], BenchConfig(suites=("kernels",)), None, "x")
