"""llama.cpp held to AVX2 (no AVX-512), the peer of our AVX2 kernel build, run in another process.

One process cannot load two builds of llama-cpp-python, so the AVX2 one lives in its own venv
(`make llamacpp-avx2` builds it into `<repo root>/.venv-llamacpp-avx2`, compiling llama.cpp with
AVX2, FMA and F16C only) and the bench runs llamacpp_peer.py there as a script, by file path: that
venv has numpy and llama_cpp, not mistral_serve. The script checks, in that process, that
llama.cpp's system info says AVX2 = 1 and no AVX512 (--require-isa avx2), and prints one JSON line:
the figures, and the system info line, which this side checks again and the report quotes.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import llamacpp_peer

PEER_SCRIPT = Path(llamacpp_peer.__file__).resolve()
VENV_NAME = ".venv-llamacpp-avx2"
# src/mistral_serve/bench/avx2_peer.py -> the repository root (in a source checkout)
REPO_ROOT = Path(__file__).resolve().parents[3]

HOW_TO_GET = (f"`make llamacpp-avx2` at the repository root builds it into {VENV_NAME}/ (compiles llama.cpp "
              "with AVX2, FMA and F16C only: about 10-20 minutes), or pass --llamacpp-avx2-python PATH")


def default_pythons() -> list[Path]:
    """Where the AVX2 venv's python is looked for: the repository root of this source tree, then
    the current directory (an installed package has no repository root of its own)."""
    candidates = [REPO_ROOT / VENV_NAME / "bin" / "python", Path.cwd() / VENV_NAME / "bin" / "python"]
    return list(dict.fromkeys(p.absolute() for p in candidates))


def find_python(configured: str | Path | None = None) -> tuple[Path | None, str]:
    """(the AVX2 venv's python, "") when found; else (None, a sentence saying how to get it)."""
    if configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path, ""
        return None, f"llama.cpp AVX2: no python at {path} (--llamacpp-avx2-python); {HOW_TO_GET}."
    for path in default_pythons():
        if path.is_file() and os.access(path, os.X_OK):
            return path, ""
    looked = " or ".join(str(p) for p in default_pythons())
    return None, f"llama.cpp AVX2 is not installed (no {looked}): {HOW_TO_GET}."


def command(python: Path, gguf: Path, mode: str, prompt_len: int, output_len: int, threads: int,
            batch: int = 1, repeats: int = 1) -> list[str]:
    """The command line of one measurement: the venv's python, isolated (-I: no PYTHONPATH, no
    user site, not the script's folder on sys.path), running llamacpp_peer.py by path."""
    cmd = [str(python), "-I", str(PEER_SCRIPT), mode, "--gguf", str(gguf), "--prompt-len", str(prompt_len),
           "--output-len", str(output_len), "--threads", str(threads), "--require-isa", "avx2"]
    if mode == "batched":
        cmd += ["--batch", str(batch)]
    else:
        cmd += ["--repeats", str(repeats)]
    return cmd


@dataclass(frozen=True, slots=True)
class Avx2Result:
    prefill_tok_s: float
    decode_tok_s: float
    output_tok_s: float
    system_info: str  # llama.cpp's line, e.g. "CPU : SSE3 = 1 | ... | AVX2 = 1 | ..."
    version: str  # llama-cpp-python's


def parse_output(stdout: str, stderr: str = "", returncode: int = 0) -> Avx2Result:
    """The script's JSON line (its last line that is one) -> the result; RuntimeError when it
    failed, refused the build, or printed no JSON."""
    record = None
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    if record is None:
        tail = " ".join((stderr or stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"llama.cpp AVX2 run printed no result (exit {returncode}){': ' + tail if tail else ''}")
    if "error" in record:
        raise RuntimeError(f"llama.cpp AVX2 run: {record['error']}")
    if returncode != 0:
        raise RuntimeError(f"llama.cpp AVX2 run exited with {returncode}")
    info = str(record.get("system_info", ""))
    problem = llamacpp_peer.isa_problem(info, "avx2")
    if problem is not None:  # the script checked it too; a second look costs nothing
        raise RuntimeError(problem)
    return Avx2Result(float(record["prefill_tok_s"]), float(record["decode_tok_s"]), float(record["output_tok_s"]),
                      info, str(record.get("llama_cpp_version", "?")))


Runner = Callable[..., subprocess.CompletedProcess]


def run_avx2_peer(python: Path, gguf: Path, prompt_len: int, output_len: int, threads: int, *,
                  mode: str = "single", batch: int = 1, repeats: int = 1, timeout: float = 1800,
                  runner: Runner | None = None) -> Avx2Result:
    """One measurement of llama.cpp's AVX2 build in a subprocess of `python` (runner: stands in
    for subprocess.run, in tests)."""
    proc = (runner or subprocess.run)(command(python, gguf, mode, prompt_len, output_len, threads, batch, repeats),
                  capture_output=True, text=True, timeout=timeout, env=_environment())
    return parse_output(proc.stdout, proc.stderr, proc.returncode)


def _environment() -> dict[str, str]:
    # -I already ignores PYTHONPATH and PYTHONHOME; drop them anyway, and the venv marker of ours.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
