"""Live servers for end-to-end tests, shared per module: the demo model on a loopback port."""

import pytest

from server_process import ServerProcess


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory):
    """One data dir holding the demo checkpoint, written once for the whole session."""
    from mistral_serve.random_checkpoint import ensure_demo

    folder = tmp_path_factory.mktemp("e2e-data")
    ensure_demo(folder)
    return folder


@pytest.fixture(scope="module")
def server(demo_data_dir):
    """An open server (no API key) on the demo model."""
    proc = ServerProcess(demo_data_dir).wait_ready()
    yield proc
    proc.stop()
