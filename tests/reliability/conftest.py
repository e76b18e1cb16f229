"""The reliability suite: a live server on loopback with the demo model, under load and faults."""

from __future__ import annotations

import pytest

from support.figures import FIGURES, FULL
from support.server_process import ServerProcess, fresh_data_dir


@pytest.fixture(scope="package")
def live(tmp_path_factory, demo_data_dir):
    """One open server (no key) shared by the load, abandoned-stream and soak scenarios, which run
    one after the other and each leave it idle."""
    proc = ServerProcess(fresh_data_dir(tmp_path_factory, demo_data_dir, "live"),
                         env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc
    proc.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES:
        return
    size = "full size" if FULL else "reduced size; `make soak` for the full one"
    terminalreporter.section(f"reliability figures ({size})")
    for line in FIGURES:
        terminalreporter.write_line(line)
