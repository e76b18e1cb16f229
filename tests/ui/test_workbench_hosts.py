"""The workbench works where users open it, http://localhost:PORT and http://127.0.0.1:PORT, with
the Host and Origin checks on (server/browser.py), and a page served under a name the server does
not answer to (DNS rebinding) gets nothing.
"""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from support.workbench import CHROMIUM, CHROMIUM_ARGS, GENERATION_TIMEOUT, send, set_param  # noqa: E402

REBINDING = "rebound.example"  # a name this Chromium resolves to 127.0.0.1, as a rebinding DNS answer does


@pytest.fixture(scope="module")
def browser():
    """This module's Chromium, resolving REBINDING to the loopback address."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        options = {"args": [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {REBINDING} 127.0.0.1"]}
        if Path(CHROMIUM).exists():
            options["executable_path"] = CHROMIUM
        launched = p.chromium.launch(**options)
        yield launched
        launched.close()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_the_workbench_answers_on_each_loopback_name(page, server, name):
    url = server.url.replace("127.0.0.1", name)
    page.goto(url + "/")
    expect(page.locator("#model-card .mc-name")).to_be_visible()
    set_param(page, "max_tokens", 4)
    send(page, "Hello")
    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_attribute("data-status", "done", timeout=GENERATION_TIMEOUT)
    assert answer.locator(".msg-text").text_content().strip()
    assert page.errors == []


def test_a_rebinding_name_gets_nothing(page, server):
    """A page served under another name that resolves to the server: its requests say that name
    in Host, and the server refuses them."""
    url = server.url.replace("127.0.0.1", REBINDING)
    response = page.goto(url + "/")
    assert response.status == 403
    assert "--allowed-hosts" in page.content()
    status = page.evaluate("async (u) => (await fetch(u + '/api/ai/generations')).status", url)
    assert status == 403
