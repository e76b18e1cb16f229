"""The workbench's screenshots in docs/screenshots (workbench-desktop.png, workbench-phone.png), each
after a real answer, and the phone layout's width and settings drawer.
"""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from support.workbench import (  # noqa: E402
    DESKTOP,
    GENERATION_TIMEOUT,
    MODEL,
    PHONE,
    SHOTS,
    new_page,
    open_params,
    open_workbench,
    send,
    set_param,
)


def test_screenshots(browser, server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(browser, DESKTOP)
    try:
        open_workbench(page, server)
        page.locator("#system-prompt").fill("You are a helpful assistant. Answer briefly.")
        set_param(page, "temperature", 0.7)
        set_param(page, "max_tokens", 48)
        send(page, "Hello, what can you do?")
        expect(page.locator(".msg.assistant").last).to_have_attribute("data-status", "done", timeout=GENERATION_TIMEOUT)
        page.locator("#prompt").focus()
        page.evaluate("document.querySelector('.params').scrollTop = 0")
        page.screenshot(path=str(SHOTS / "workbench-desktop.png"))
        assert not page.errors
    finally:
        page.context.close()

    page = new_page(browser, PHONE, is_mobile=True, has_touch=True)
    try:
        page.goto(server.url + "/")
        expect(page.locator("#model-chip")).to_contain_text(MODEL)
        pane = page.locator(".pane").first
        open_params(pane)
        set_param(pane, "max_tokens", 40)
        pane.locator(".params-close").click()
        send(page, "Hello, what can you do?")
        expect(page.locator(".msg.assistant").last).to_have_attribute("data-status", "done", timeout=GENERATION_TIMEOUT)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=str(SHOTS / "workbench-phone.png"))
        # The settings drawer holds the model card and the key field.
        page.locator("#settings-toggle").click()
        expect(page.locator("#model-card .mc-name")).to_be_visible()
        expect(page.locator("#api-key")).to_be_visible()
        assert not page.errors
    finally:
        page.context.close()
