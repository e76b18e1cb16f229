"""Fixtures shared by the split e2e files: the error tests (test_errors_*.py) and the `openai` client
tests (test_openai_*.py).

Each group shares its servers across its files (package scope: its tests only send requests), as
when it was one module: `errors_server` and `locked` for the error tests, `openai_server` for the
client tests. A file of a group takes its open server as `server` with a module fixture of its own,
so that the other e2e files keep the root conftest's `server`, one per module.
"""

from __future__ import annotations

import httpx
import pytest

# Their asserts are the tests' own: rewritten as in a test module, for the same failure reports.
pytest.register_assert_rewrite("support.error_shapes", "support.openai_helpers")

from openai import OpenAI  # noqa: E402

from support.error_shapes import KEY, MAX_BODY, MAX_LEN  # noqa: E402
from support.server_process import ServerProcess  # noqa: E402


def _open_server(demo_data_dir) -> ServerProcess:
    """An open server (no API key) on the demo model, whatever MISTRAL_SERVE_API_KEY the
    environment holds: the root conftest's `server`."""
    return ServerProcess(demo_data_dir, env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()


# ---- the error tests ---------------------------------------------------------------------------

@pytest.fixture
def http() -> httpx.Client:
    """A client for one test that fails the test if any response it got was a 5xx: every bad
    input in the error tests must be the client's error, never the server's."""
    statuses: list[tuple[str, str, int]] = []  # (method, url, status) of this test's responses

    def record(response: httpx.Response) -> None:
        statuses.append((response.request.method, str(response.request.url), response.status_code))

    with httpx.Client(timeout=120, event_hooks={"response": [record]}) as client:
        yield client
    assert [s for s in statuses if s[2] >= 500] == []


@pytest.fixture(scope="package")
def errors_server(demo_data_dir):
    """The error tests' open server."""
    proc = _open_server(demo_data_dir)
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def locked(demo_data_dir):
    """A server with an API key, a small body limit and a short context."""
    proc = ServerProcess(demo_data_dir, "--api-key", KEY, "--max-body-bytes", str(MAX_BODY),
                         "--max-model-len", str(MAX_LEN)).wait_ready()
    yield proc
    proc.stop()


# ---- the openai client tests -------------------------------------------------------------------

@pytest.fixture(scope="package")
def openai_server(demo_data_dir):
    """The `openai` client tests' open server."""
    proc = _open_server(demo_data_dir)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    """The official client on the module's `server` (test_structured_outputs.py and
    test_real_model.py have their own)."""
    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)
