"""The bench's AVX2 suite (bench/avx2_peer.py: llama.cpp held to AVX2, run as a script in its own
venv; run.avx2_section), and the HTTP suite's step-time target and ITL p99 / p50."""

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mistral_serve.bench import avx2_peer, llamacpp_peer
from mistral_serve.bench.summary import Figures, summary_lines
from mistral_serve.config import BenchConfig, EngineConfig, ModelConfig

AVX2_INFO = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | "
             "OPENMP = 1 | REPACK = 1")
AVX512_INFO = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
               "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1")


def _record(**extra) -> str:
    return json.dumps({"mode": "single", "system_info": AVX2_INFO, "threads": 2, "llama_cpp_version": "0.3.36",
                       "prefill_tok_s": 120.0, "decode_tok_s": 12.5, "output_tok_s": 10.0, **extra})


# ---- the script's independence of mistral_serve ------------------------------------------------

def test_the_peer_script_imports_only_the_standard_library_and_numpy_at_module_level():
    """It runs by file path in a venv that has numpy and llama_cpp only."""
    tree = ast.parse(Path(llamacpp_peer.__file__).read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import at module level"
            top.add(node.module.split(".")[0])
    assert top <= {"__future__", "argparse", "json", "logging", "random", "re", "sys", "time", "pathlib", "numpy"}, top
    for node in ast.walk(tree):  # nor anywhere inside a function
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not node.module.startswith("mistral_serve"), ast.dump(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("mistral_serve") for a in node.names)


def test_isa_check_wants_avx2_and_no_avx512():
    assert llamacpp_peer.isa_problem(AVX2_INFO, "avx2") is None
    problem = llamacpp_peer.isa_problem(AVX512_INFO, "avx2")
    assert "AVX512, AVX512_BF16, AVX512_VBMI, AVX512_VNNI" in problem and "not held to AVX2" in problem
    assert "does not report AVX2 = 1" in llamacpp_peer.isa_problem("CPU : SSE3 = 1 | AVX = 1", "avx2")
    assert llamacpp_peer.isa_problem("CPU : AVX2 = 1 | AVX512 = 0", "avx2") is None  # listed but off
    with pytest.raises(ValueError):
        llamacpp_peer.isa_problem(AVX2_INFO, "avx512")


# ---- the subprocess: its command line, its output ----------------------------------------------

def test_command_line_runs_the_script_by_path_isolated_and_requires_avx2():
    cmd = avx2_peer.command(Path("/v/bin/python"), Path("/d/m.gguf"), "single", 64, 32, 2, repeats=2)
    assert cmd[:3] == ["/v/bin/python", "-I", str(avx2_peer.PEER_SCRIPT)]
    assert avx2_peer.PEER_SCRIPT.name == "llamacpp_peer.py" and avx2_peer.PEER_SCRIPT.is_file()
    assert cmd[3] == "single"
    args = dict(zip(cmd[4::2], cmd[5::2]))
    assert args == {"--gguf": "/d/m.gguf", "--prompt-len": "64", "--output-len": "32", "--threads": "2",
                    "--require-isa": "avx2", "--repeats": "2"}
    batched = avx2_peer.command(Path("/p"), Path("/m.gguf"), "batched", 16, 8, 4, batch=8)
    assert batched[3] == "batched" and batched[batched.index("--batch") + 1] == "8" and "--repeats" not in batched
    # The script's own parser takes that command line.
    ns = llamacpp_peer._parser().parse_args(cmd[3:])
    assert (ns.mode, ns.gguf, ns.prompt_len, ns.output_len, ns.threads, ns.repeats, ns.require_isa) == \
        ("single", Path("/d/m.gguf"), 64, 32, 2, 2, "avx2")


def test_run_parses_the_json_line_of_a_mocked_subprocess(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    seen = {}

    def runner(cmd, **kwargs):
        seen["cmd"], seen["kwargs"] = cmd, kwargs
        return subprocess.CompletedProcess(cmd, 0, "llama.cpp noise on stdout\n" + _record() + "\n", "log\n")

    r = avx2_peer.run_avx2_peer(Path("/v/bin/python"), Path("/m.gguf"), 64, 32, 3, repeats=2, runner=runner)
    assert (r.prefill_tok_s, r.decode_tok_s, r.output_tok_s, r.version) == (120.0, 12.5, 10.0, "0.3.36")
    assert r.system_info == AVX2_INFO
    assert seen["cmd"][0] == "/v/bin/python" and "--threads" in seen["cmd"]
    assert seen["kwargs"]["capture_output"] and seen["kwargs"]["text"] and seen["kwargs"]["timeout"] > 0
    assert "PYTHONPATH" not in seen["kwargs"]["env"]


def test_run_reports_a_refused_build_a_failure_and_no_output():
    def runner_for(stdout, rc, stderr=""):
        return lambda cmd, **kw: subprocess.CompletedProcess(cmd, rc, stdout, stderr)

    refused = json.dumps({"mode": "single", "system_info": AVX512_INFO,
                          "error": llamacpp_peer.isa_problem(AVX512_INFO, "avx2")})
    with pytest.raises(RuntimeError, match="not held to AVX2"):
        avx2_peer.run_avx2_peer(Path("/p"), Path("/m"), 8, 4, 1, runner=runner_for(refused, 3))
    with pytest.raises(RuntimeError, match="printed no result .exit 1.: .*Segmentation"):
        avx2_peer.run_avx2_peer(Path("/p"), Path("/m"), 8, 4, 1, runner=runner_for("", 1, "a\nSegmentation fault\n"))
    # A line saying AVX-512 is refused on this side too, whatever the script concluded.
    with pytest.raises(RuntimeError, match="not held to AVX2"):
        avx2_peer.parse_output(_record(system_info=AVX512_INFO))
    with pytest.raises(RuntimeError, match="exited with 2"):
        avx2_peer.parse_output(_record(), returncode=2)


def test_missing_venv_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(avx2_peer, "default_pythons", lambda: [tmp_path / "nope" / "bin" / "python"])
    python, message = avx2_peer.find_python(None)
    assert python is None
    assert "not installed" in message and "make llamacpp-avx2" in message and "10-20 minutes" in message
    assert str(tmp_path / "nope") in message and "--llamacpp-avx2-python" in message
    python, message = avx2_peer.find_python(tmp_path / "missing-python")
    assert python is None and "no python at" in message and "make llamacpp-avx2" in message
    exe = tmp_path / "python"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert avx2_peer.find_python(str(exe)) == (exe, "")
    monkeypatch.setattr(avx2_peer, "default_pythons", lambda: [tmp_path / "nope", exe])
    assert avx2_peer.find_python(None) == (exe, "")


def test_the_default_venv_is_at_the_repository_root():
    root = Path(__file__).resolve().parents[2]
    assert root / ".venv-llamacpp-avx2" / "bin" / "python" in avx2_peer.default_pythons()


# ---- the summary ----------------------------------------------------------------------------

def test_summary_rows_of_the_avx2_suite_and_the_http_latency_spread():
    f = Figures(avx2_decode=15.0, avx2_prefill=90.0, llamacpp_avx2_decode=12.0, llamacpp_avx2_prefill=180.0,
                llamacpp_avx2_type="Q4_0", ours_http={1: 10.0, 8: 40.0, 32: 60.0},
                http_itl_spread={1: 1.2, 32: 2.5}, http_ttft_p99={32: 1.234}, target_step_ms=100.0)
    text = "\n".join(summary_lines(f))
    assert "| AVX2 build, decode, 1 stream: ours / llama.cpp (AVX2) | 15.0 / 12.0 = **1.25x** | ≥ 1.0x met |" in text
    assert "| AVX2 build, prefill: ours / llama.cpp (AVX2) | 90.0 / 180.0 = **0.50x** |" in text
    assert ("| 32 streaming clients, HTTP: inter-token latency p99 / p50, --target-step-ms 100 | **2.50x** | "
            "≤ 3x met |") in text
    assert "| 32 streaming clients, HTTP: time to first token p99 | **1234 ms** |" in text
    missed = "\n".join(summary_lines(Figures(avx2_decode=9.0, llamacpp_avx2_decode=12.0, ours_http={32: 1.0},
                                             http_itl_spread={32: 4.0})))
    assert "9.0 / 12.0 = **0.75x** | ≥ 1.0x missed" in missed
    assert "inter-token latency p99 / p50 | **4.00x** | ≤ 3x missed" in missed
    # llama.cpp AVX2 not installed: the row says so, with no verdict.
    alone = "\n".join(summary_lines(Figures(avx2_decode=9.0, avx2_prefill=50.0)))
    assert "| AVX2 build, decode, 1 stream: ours / llama.cpp (AVX2) | not measured | ≥ 1.0x |" in alone


# ---- the avx2 section, every system mocked ---------------------------------------------------

@pytest.fixture
def fake_avx2(monkeypatch, tmp_path):
    """run.avx2_section with the loads, our measurements and the llama.cpp subprocess faked."""
    from mistral_serve.bench import run
    from mistral_serve.model import kernels

    monkeypatch.setattr(kernels, "cpu_kernels", lambda variant=None: object())
    busy = iter([1.5, 0.0, 0.25])
    monkeypatch.setattr(run.OthersCpu, "cores", lambda self: next(busy))
    loads = []

    def fake_load(cfg):
        loads.append(cfg.cpu_kernels)
        return SimpleNamespace(choice=cfg.cpu_kernels, device=SimpleNamespace(type="cpu"))

    monkeypatch.setattr(run, "load", fake_load)
    monkeypatch.setattr(run, "kernels_description", lambda lm: f", matmuls: fake {lm.choice}")
    rates = {"avx2": (100.0, 20.0), "stock": (50.0, 10.0), "auto": (100.0, 20.0)}
    monkeypatch.setattr(run, "_single_stream", lambda lm, bench: rates[lm.choice])
    folder = tmp_path / "ckpt"
    gguf = tmp_path / "bench" / "gguf" / "ckpt-Q4_0-output-Q8_0.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF")  # already exported: no export runs
    cfg = ModelConfig(model=str(folder), quantize="int4", data_dir=tmp_path)
    main = SimpleNamespace(choice="auto", device=SimpleNamespace(type="cpu"), files=SimpleNamespace(layout="hf"))
    return SimpleNamespace(run=run, cfg=cfg, loaded=main, loads=loads, gguf=gguf)


def test_avx2_section_without_the_venv_reports_ours_and_how_to_get_llamacpp(fake_avx2, monkeypatch, tmp_path):
    run = fake_avx2.run
    report = run.Report()
    bench = BenchConfig(llamacpp_avx2_python=str(tmp_path / "no-venv" / "bin" / "python"))
    run.avx2_section(report, fake_avx2.cfg, fake_avx2.loaded, bench)
    text = "\n".join(report.lines)
    assert fake_avx2.loads == ["avx2", "stock"]  # the same checkpoint loaded with each build
    assert "| system | build | prefill tok/s | decode tok/s | others' CPU |" in text
    assert "| ours, --cpu-kernels avx2 | our AVX2 build (matmuls: fake avx2) | 100.0 | 20.0 | 1.5 |" in text
    assert "| ours, --cpu-kernels stock | PyTorch's stock kernels (matmuls: fake stock) | 50.0 | 10.0 | 0.0 |" in text
    assert "| llama.cpp Q4_0 (output layer Q8_0) | AVX2, no AVX-512 | not installed | | |" in text
    assert "make llamacpp-avx2" in text
    assert "ours AVX2 / ours on PyTorch's stock kernels: decode **2.00x**, prefill **2.00x**" in text
    f = report.figures
    assert (f.avx2_decode, f.stock_decode) == (20.0, 10.0) and math.isnan(f.llamacpp_avx2_decode)


def test_the_cpu_other_processes_take_is_measured_apart_from_ours():
    import time

    from mistral_serve.bench.run import OthersCpu

    others = OthersCpu()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # our own work is not counted as others'
        sum(range(1000))
    cores = others.cores()
    if others.start is None:
        assert math.isnan(cores)
    else:
        assert 0.0 <= cores <= (os.cpu_count() or 1) + 0.01


def test_avx2_section_runs_llamacpp_in_its_venv_and_feeds_the_summary(fake_avx2, monkeypatch, tmp_path):
    run = fake_avx2.run
    exe = tmp_path / "venv" / "bin" / "python"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    calls = []

    def runner(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, _record(prefill_tok_s=200.0, decode_tok_s=16.0) + "\n", "")

    monkeypatch.setattr(avx2_peer.subprocess, "run", runner)
    report = run.Report()
    cfg = ModelConfig(model=fake_avx2.cfg.model, quantize="int4", data_dir=tmp_path, cpu_kernels="avx2")
    run.avx2_section(report, cfg, fake_avx2.loaded, BenchConfig(llamacpp_avx2_python=str(exe)))
    text = "\n".join(report.lines)
    assert fake_avx2.loads == ["stock"]  # the model of the run is already the AVX2 build: reused
    assert "| ours, --cpu-kernels avx2 | our AVX2 build (matmuls: fake auto) |" in text
    assert len(calls) == 1 and calls[0][0] == str(exe) and calls[0][calls[0].index("--gguf") + 1] == str(fake_avx2.gguf)
    assert "| llama.cpp Q4_0 (output layer Q8_0) | llama-cpp-python 0.3.36 built with AVX2 + FMA + F16C, no AVX-512" in text
    assert "| 200.0 | 16.0 | 0.2 |" in text
    assert f"its system info (checked: AVX2 = 1, no AVX512): `{AVX2_INFO}`" in text
    assert "ours AVX2 / llama.cpp AVX2 (Q4_0): decode **1.25x**, prefill **0.50x**" in text
    summary = "\n".join(summary_lines(report.figures))
    assert "AVX2 build, decode, 1 stream: ours / llama.cpp (AVX2) | 20.0 / 16.0 = **1.25x** | ≥ 1.0x met" in summary


def test_avx2_section_is_skipped_off_the_cpu_and_without_our_avx2_build(fake_avx2, monkeypatch):
    from mistral_serve.model import kernels

    run = fake_avx2.run
    report = run.Report()
    cuda = SimpleNamespace(device=SimpleNamespace(type="cuda"))
    run.avx2_section(report, fake_avx2.cfg, cuda, BenchConfig())
    assert "Skipped: the model runs on" in "\n".join(report.lines)
    monkeypatch.setattr(kernels, "cpu_kernels", lambda variant=None: None)
    monkeypatch.setattr(kernels, "unavailable_reason", lambda variant=None: "the CPU lacks avx2")
    report = run.Report()
    run.avx2_section(report, fake_avx2.cfg, fake_avx2.loaded, BenchConfig())
    assert "Skipped: our AVX2 build cannot run here (the CPU lacks avx2)" in "\n".join(report.lines)
    assert fake_avx2.loads == []


# ---- the HTTP suite: --target-step-ms to the server, the ITL p99 / p50 column ------------------

def test_http_section_passes_the_step_target_and_reports_the_itl_spread(monkeypatch, tmp_path):
    from mistral_serve.bench import http_bench, run

    seen = {}

    class FakeServer:
        url = "http://127.0.0.1:1"

        @classmethod
        def mistral_serve(cls, args, data_dir):
            seen["args"] = args
            return cls()

        def wait_ready(self): pass
        def model_id(self): return "m"
        def kv_blocks_total(self): return 10
        def peak_rss(self): return 2**30
        def stop(self): seen["stopped"] = True

    async def fake_clients(url, model, clients, words, output_len):
        # exact binary fractions: 32 clients give p99 / p50 = 3 exactly, the target's edge
        return http_bench.HttpResult(clients, 10.0 * clients, 0.1, 0.2 * clients, 0.0625, 0.0625 * (1 + clients / 16), 0)

    monkeypatch.setattr(http_bench, "LocalServer", FakeServer)
    monkeypatch.setattr(http_bench, "run_clients", fake_clients)
    monkeypatch.setattr(run, "_weights_bytes", lambda model: 2**29)
    monkeypatch.setattr(run, "kv_bytes_per_block", lambda model, block: 1024)
    monkeypatch.setattr(run, "kernels_description", lambda lm: ", matmuls: fake")
    report = run.Report()
    run.http_section(report, ModelConfig(data_dir=tmp_path), SimpleNamespace(model=None),
                     BenchConfig(http_clients=(1, 32), target_step_ms=40.0), "demo")
    args = seen["args"]
    assert args[args.index("--target-step-ms") + 1] == "40" and seen["stopped"]
    text = "\n".join(report.lines)
    assert "--target-step-ms 40, matmuls: fake" in text
    assert "| clients | output tok/s | TTFT p50 / p99 | inter-token p50 / p99 | ITL p99 / p50 | errors |" in text
    assert "| 32 | 320.0 | 100 / 6400 ms | 62.5 / 187.5 ms | 3.00x | 0 |" in text
    assert report.figures.http_itl_spread[32] == pytest.approx(3.0) and report.figures.http_ttft_p99[32] == 6.4
    summary = "\n".join(summary_lines(report.figures))
    assert "32 streaming clients, HTTP: inter-token latency p99 / p50, --target-step-ms 40 | **3.00x** | ≤ 3x met" in summary
    assert "time to first token p99 | **6400 ms**" in summary


def test_bench_options_reach_the_bench_config(monkeypatch):
    from mistral_serve.bench import run
    from mistral_serve.cli import build_parser, main

    seen = {}
    monkeypatch.setattr(run, "run_bench", lambda models, bench, out, command: seen.setdefault("bench", bench) and "")
    assert main(["bench", "--shapes", "", "--suites", "avx2,http", "--target-step-ms", "25",
                 "--llamacpp-avx2-python", "/opt/avx2/bin/python", "--out", "-"]) == 0
    bench = seen["bench"]
    assert bench.suites == ("avx2", "http") and bench.target_step_ms == 25.0
    assert bench.llamacpp_avx2_python == "/opt/avx2/bin/python"
    ns = build_parser().parse_args(["bench"])
    assert ns.target_step_ms == EngineConfig().target_step_ms and ns.llamacpp_avx2_python is None
    assert "avx2" not in BenchConfig().suites  # opt-in: two more loads per model and a venv of its own
    assert main(["bench", "--shapes", "", "--suites", "avx3", "--out", "-"]) == 2
    with pytest.raises(ValueError, match="target-step-ms"):
        BenchConfig(target_step_ms=-1)


# ---- the script for real: llamacpp_peer.py run by file path on a tiny GGUF ---------------------

@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    pytest.importorskip("gguf")
    if not llamacpp_peer.available():
        pytest.skip("llama-cpp-python is not installed")
    import shutil

    import torch

    from mistral_serve.bench.gguf_export import export_gguf
    from mistral_serve.model.args import ModelArgs
    from mistral_serve.model.writer import random_parameters, write_checkpoint
    from mistral_serve.tokenizer import bundled_tokenizer_file

    args = ModelArgs(dim=128, n_layers=1, head_dim=32, hidden_dim=256, n_heads=4, n_kv_heads=2,
                     vocab_size=32768, max_seq_len=128)
    folder = tmp_path_factory.mktemp("tiny-ckpt")
    write_checkpoint(folder, args, random_parameters(args), dtype=torch.float32)
    shutil.copy(bundled_tokenizer_file("v3"), folder / "tokenizer.model.v3")
    return export_gguf(folder, folder / "tiny-q8.gguf", "Q8_0")


def _script(python: str, gguf: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([python, str(avx2_peer.PEER_SCRIPT), "single", "--gguf", str(gguf), "--prompt-len", "16",
                           "--output-len", "4", "--threads", "1", *extra],
                          capture_output=True, text=True, timeout=120, env=env, cwd="/")


def test_the_peer_script_runs_by_file_path_and_prints_one_json_line(tiny_gguf):
    proc = _script(sys.executable, tiny_gguf)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["mode"] == "single" and record["prefill_tok_s"] > 0 and record["decode_tok_s"] > 0
    assert "AVX2" in record["system_info"] or "CPU" in record["system_info"]
    # The same build's answer to --require-isa avx2: refused (exit 3) where it has AVX-512.
    proc = _script(sys.executable, tiny_gguf, "--require-isa", "avx2")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    if llamacpp_peer.isa_problem(record["system_info"], "avx2") is None:
        assert proc.returncode == 0 and "error" not in record
    else:
        assert proc.returncode == 3 and "not held to AVX2" in record["error"] and "decode_tok_s" not in record


def test_the_avx2_venv_runs_the_script_when_it_is_there(tiny_gguf):
    python, missing = avx2_peer.find_python(None)
    if python is None:
        pytest.skip(missing)
    r = avx2_peer.run_avx2_peer(python, tiny_gguf, 16, 4, 1)
    assert r.prefill_tok_s > 0 and r.decode_tok_s > 0
    assert "AVX2 = 1" in r.system_info and "AVX512" not in r.system_info
