"""The command line end to end: init, generate, chat (with Ctrl-C), errors and exit codes."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mistral_serve.cli import main
from mistral_serve.model import hardware
from mistral_serve.model.checkpoint import find_checkpoint, read_args
from mistral_serve.model.args import preset
from mistral_serve.random_checkpoint import DEMO_MARKER, ensure_demo


def run_cli(*args, data_dir, input_text=None, timeout=120):
    env = {**os.environ, "MISTRAL_SERVE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "mistral_serve.cli", *args], input=input_text,
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    ensure_demo(folder)
    return folder


def test_demo_is_written_once_and_labelled(data_dir):
    demo = ensure_demo(data_dir)
    assert (demo / DEMO_MARKER).is_file()
    stamp = (demo / "model.safetensors").stat().st_mtime_ns
    assert ensure_demo(data_dir) == demo
    assert (demo / "model.safetensors").stat().st_mtime_ns == stamp
    assert read_args(find_checkpoint(demo)) == preset("demo")


@pytest.mark.parametrize("layout", ["hf", "mistral"])
def test_init_writes_a_loadable_checkpoint(tmp_path, capsys, layout):
    out = tmp_path / "ckpt"
    assert main(["init", "--preset", "demo", "--out", str(out), "--layout", layout, "--seed", "3"]) == 0
    assert "wrote a random demo checkpoint" in capsys.readouterr().out
    files = find_checkpoint(out)
    assert files.layout == layout
    assert (out / "tokenizer.model.v3").is_file()
    # The same folder again is refused rather than overwritten.
    assert main(["init", "--preset", "demo", "--out", str(out)]) == 2


def test_generate_prints_a_completion(data_dir):
    result = run_cli("generate", "--prompt", "Hello", "--max-tokens", "12", "--temperature", "0",
                     data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "demo model" in result.stderr and "random" in result.stderr
    assert result.stdout.strip()
    again = run_cli("generate", "--prompt", "Hello", "--max-tokens", "12", "--temperature", "0",
                    data_dir=data_dir)
    assert again.stdout == result.stdout  # greedy is deterministic


def test_generate_on_a_model_folder_with_raw_prompt(tmp_path, data_dir):
    out = tmp_path / "m"
    main(["init", "--preset", "demo", "--out", str(out), "--dtype", "float32", "--seed", "5"])
    result = run_cli("generate", "--model", str(out), "--raw", "--prompt", "Once upon a time",
                     "--max-tokens", "5", "--seed", "1", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "demo model" not in result.stderr  # a folder written by init is not the demo


def test_chat_keeps_a_conversation(data_dir):
    result = run_cli("chat", "--max-tokens", "8", "--system", "Be brief.", data_dir=data_dir,
                     input_text="Hello\n/clear\nAgain\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(">>> ") == 4


def test_ctrl_c_stops_the_answer_not_the_program(data_dir):
    env = {**os.environ, "MISTRAL_SERVE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mistral_serve.cli", "chat", "--max-tokens", "30000",
                             "--temperature", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        proc.stdin.write("Tell me a long story\n")
        proc.stdin.flush()
        first = proc.stdout.read(8)  # the prompt and the first streamed characters
        assert first.startswith(">>> ")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.stdin.write("/exit\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "[stopped]" in out
    assert out.rstrip().endswith(">>>")  # back at the prompt after the interrupted answer


@pytest.mark.parametrize("args, message", [
    (["generate", "--model", "/no/such/folder", "--prompt", "x"], "no such file or folder"),
    (["generate", "--model", "ollama:not-pulled", "--prompt", "x"], "not in the Ollama store"),
    (["generate", "--model", "not a model", "--prompt", "x"], "not a Hugging Face hub id"),
])
def test_user_errors_are_one_line_with_exit_code_2(data_dir, args, message):
    result = run_cli(*args, data_dir=data_dir)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_tokenizer_vocabulary_mismatch_is_refused(tmp_path, data_dir):
    out = tmp_path / "m"
    main(["init", "--preset", "demo", "--out", str(out)])
    (out / "tokenizer.model.v3").unlink()
    from mistral_serve.tokenizer import bundled_tokenizer_file
    (out / "tokenizer.model.v1").write_bytes(bundled_tokenizer_file("v1").read_bytes())
    result = run_cli("generate", "--model", str(out), "--prompt", "x", data_dir=data_dir)
    assert result.returncode == 2
    assert "tokenizer.model.v1" in result.stderr and "32000" in result.stderr and "32768" in result.stderr


def test_missing_tokenizer_is_refused(tmp_path, data_dir):
    out = tmp_path / "m"
    main(["init", "--preset", "demo", "--out", str(out)])
    (out / "tokenizer.model.v3").unlink()
    result = run_cli("generate", "--model", str(out), "--prompt", "x", data_dir=data_dir)
    assert result.returncode == 2 and "no tokenizer file" in result.stderr


def test_auto_dtype(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(hardware, "available_memory", lambda: 24 * 10**9)
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    assert hardware.resolve_dtype("auto", cpu, 10**9) == torch.float32
    # A 7B model does not fit in 24 GB as float32: bf16 is the only way to load it.
    assert hardware.resolve_dtype("auto", cpu, 7_250_000_000) == torch.bfloat16
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    assert hardware.resolve_dtype("auto", cpu, 10**9) == torch.bfloat16
    assert hardware.resolve_dtype("float16", cpu, 10**9) == torch.float16
    with pytest.raises(ValueError):
        hardware.resolve_device("tpu")


def test_threads_follow_the_usable_cpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0})
    before = torch.get_num_threads()
    try:
        assert hardware.configure_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
