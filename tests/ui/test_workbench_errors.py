"""How the workbench explains failures: a missing or wrong API key (then the right one), and the
server's or the network's errors, shown as sentences rather than JSON.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from support.workbench import GENERATION_TIMEOUT, open_workbench, send, set_param  # noqa: E402


def test_a_wrong_key_is_explained_and_the_right_one_works(page, keyed_server):
    page.goto(keyed_server.url + "/")
    card = page.locator("#model-card")
    expect(card.locator(".error-box")).to_contain_text("API key needed")
    page.locator("#api-key").fill("wrong")
    expect(card.locator(".error-box")).to_contain_text("API key rejected")
    send(page, "Hello")
    error = page.locator(".msg.assistant .error-box")
    expect(error).to_contain_text("API key rejected")
    expect(error).to_contain_text("Incorrect API key provided")
    shown = error.inner_text()
    assert "{" not in shown and '"error"' not in shown and "unauthenticated" not in shown

    page.locator("#api-key").fill("secret")
    expect(card.locator(".mc-name")).to_be_visible()
    expect(card.locator(".error-box")).to_have_count(0)
    assert page.evaluate("localStorage.getItem('mistral-serve.apiKey')") == "secret"
    set_param(page, "max_tokens", 8)
    send(page, "Hello again")
    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_attribute("data-status", "done", timeout=GENERATION_TIMEOUT)
    # The key stays for the next visit.
    page.reload()
    expect(page.locator("#api-key")).to_have_value("secret")
    expect(card.locator(".mc-name")).to_be_visible()


def test_errors_are_sentences_not_json(page, server):
    open_workbench(page, server)
    # Too long for the context: the server's own 400.
    set_param(page, "max_tokens", 40000)
    send(page, "Hello")
    error = page.locator(".msg.assistant").last.locator(".error-box")
    expect(error).to_contain_text("Too long for the model's context")
    expect(error).to_contain_text("32768")
    # Busy (429) and an unreachable server, simulated.
    busy = {"error": {"type": "unknown_error", "title": "Too Many Requests",
                      "detail": "the server is busy (192 requests in flight, queue limit 192); retry shortly"},
            "status": "error", "status_message": "unknown_error"}
    page.route("**/api/ai/chat/completions", lambda route: route.fulfill(
        status=429, headers={"Content-Type": "application/json", "Retry-After": "3"}, body=json.dumps(busy)))
    page.locator("#regenerate-btn").click()
    error = page.locator(".msg.assistant").last.locator(".error-box")
    expect(error).to_contain_text("Server busy")
    expect(error).to_contain_text("Try again in 3 s")
    page.unroute("**/api/ai/chat/completions")
    page.route("**/api/ai/chat/completions", lambda route: route.abort("connectionrefused"))
    page.locator("#regenerate-btn").click()
    expect(page.locator(".msg.assistant").last.locator(".error-box")).to_contain_text("Can't reach the server")
    for shown in page.locator(".error-box").all_inner_texts():
        assert "{" not in shown and "status_message" not in shown
