"""Shared by every test folder: the package on sys.path, and live-server fixtures."""

import pathlib
import sys

import pytest

# Tests import the package from src/ even when it is not installed in editable mode.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

from support.server_process import ServerProcess  # noqa: E402  (this folder is on sys.path: conftest's own)


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory):
    """One data dir holding the demo checkpoint, written once for the whole session."""
    from mistral_serve.random_checkpoint import ensure_demo

    folder = tmp_path_factory.mktemp("demo-data")
    ensure_demo(folder)
    return folder


@pytest.fixture(scope="module")
def server(demo_data_dir):
    """An open server (no API key) on the demo model, whatever MISTRAL_SERVE_API_KEY the
    environment holds."""
    proc = ServerProcess(demo_data_dir, env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc
    proc.stop()
