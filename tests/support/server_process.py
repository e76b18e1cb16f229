"""Start the real server (`mistral-serve serve`) on a free loopback port, in its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"server-{self.port}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mistral_serve.cli", "serve", "--port", str(self.port),
             "--data-dir", str(data_dir), *args],
            stdout=self._log, stderr=subprocess.STDOUT,
            # One torch thread: the test process shares the 2 cores with the server, and
            # OpenMP threads spinning against it slow a busy machine down many times over.
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})

    def wait_ready(self, timeout: float = 120.0) -> "ServerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def resources(self) -> dict[str, int]:
        """The server process's resident memory (bytes), open file descriptors and threads (Linux /proc)."""
        proc = Path(f"/proc/{self.proc.pid}")
        rss_kb = next(line.split()[1] for line in (proc / "status").read_text().splitlines()
                      if line.startswith("VmRSS:"))
        return {"rss": int(rss_kb) * 1024, "fds": len(os.listdir(proc / "fd")),
                "threads": len(os.listdir(proc / "task"))}

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric from /metrics."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{}"):
                return float(line.split()[-1])
        raise KeyError(name)


def fresh_data_dir(factory, demo_data_dir: Path, name: str) -> Path:
    """An empty data dir (its own key and generation store) sharing the session's demo checkpoint."""
    from mistral_serve.random_checkpoint import ensure_demo

    demo = ensure_demo(demo_data_dir)
    folder = factory.mktemp(name)
    (folder / demo.name).symlink_to(demo, target_is_directory=True)
    return folder
