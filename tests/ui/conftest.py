"""Fixtures of the workbench and model-page tests (test_workbench_*.py, test_model_page.py).

One open server and one keyed server on the demo model serve all of those files (package scope:
they only send it requests); each file launches its own Chromium, and each test gets a fresh page.
test_real_model_pages.py defines its own `server` and `page`, which take precedence.
Playwright is imported inside the fixtures, so that the test files' importorskip can skip them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.server_process import ServerProcess


@pytest.fixture(scope="package")
def server(demo_data_dir):
    """An open server (no API key) on the demo model, whatever MISTRAL_SERVE_API_KEY the
    environment holds."""
    proc = ServerProcess(demo_data_dir, env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def keyed_server(demo_data_dir):
    proc = ServerProcess(demo_data_dir, "--api-key", "secret").wait_ready()
    yield proc
    proc.stop()


# Module scope, not package: two sync_playwright() cannot run at once in one thread, and
# test_real_model_pages.py starts its own between these files.
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    from support.workbench import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        options = {"args": CHROMIUM_ARGS}
        if Path(CHROMIUM).exists():
            options["executable_path"] = CHROMIUM
        try:
            launched = p.chromium.launch(**options)
        except PlaywrightError as err:
            pytest.skip(f"no Chromium to drive ({err.message.splitlines()[0]}); install it or set CHROMIUM")
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    from support.workbench import new_page

    page = new_page(browser)
    yield page
    page.context.close()
    assert not page.errors, f"JavaScript errors on the page: {page.errors}"
