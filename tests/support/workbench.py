"""Helpers of the browser tests of the workbench (/) and the model page: Chromium settings, pages,
the workbench's controls, and canned event streams to answer chat requests with (page.route).

Import it after `pytest.importorskip("playwright.sync_api")`: it needs Playwright.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]

MODEL = "open-mistral-7b"
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# The build machines are small and shared: be patient with the server, strict with the page.
expect.set_options(timeout=20_000)
GENERATION_TIMEOUT = 90_000


# ---- pages -------------------------------------------------------------------------------------

def new_page(browser, viewport=DESKTOP, **options):
    context = browser.new_context(viewport=viewport, **options)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda err: page.errors.append(str(err)))
    return page


# ---- the workbench's controls ------------------------------------------------------------------

def open_workbench(page, server, path="/"):
    page.goto(server.url + path)
    expect(page.locator("#model-card .mc-name")).to_be_visible()
    return page


def show_param(scope, name):
    """Open the closed Advanced group that holds a parameter (the basic ones show without)."""
    closed = scope.locator(f'details.advanced:not([open]):has([data-param="{name}"]) > summary')
    if closed.count():
        closed.click()


def set_param(scope, name, value):
    """Type a value into a generated parameter control (the number box of a slider too)."""
    show_param(scope, name)
    box = scope.locator(f'[data-param="{name}"] input[type=number]')
    box.fill(str(value))
    box.press("Tab")


def open_params(pane):
    if not pane.locator(".params").is_visible():
        pane.locator(".params-toggle").click()
    expect(pane.locator(".params")).to_be_visible()


def send(page, text):
    page.locator("#prompt").fill(text)
    page.locator("#prompt").press("Enter")


def watch_streaming(page):
    """Record, on every DOM change, the text length of streaming answers and how many stream at once."""
    page.evaluate("""() => {
        window.__lengths = []; window.__maxStreaming = 0;
        new MutationObserver(() => {
            const live = document.querySelectorAll('.msg.assistant[data-status="streaming"]');
            window.__maxStreaming = Math.max(window.__maxStreaming, live.length);
            live.forEach((el) => window.__lengths.push(el.querySelector('.msg-text').textContent.length));
        }).observe(document.getElementById('panes'), {subtree: true, childList: true, characterData: true, attributes: true});
    }""")


def chat_bodies(page):
    """The JSON bodies the page posts to the chat endpoint, as they are sent."""
    bodies = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data))
            if r.url.endswith("/chat/completions") and r.method == "POST" else None)
    return bodies


# ---- canned answers ----------------------------------------------------------------------------

def sse(*chunks) -> str:
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def canned_answer(text: str, prompt_tokens=5, completion_tokens=7, finish="stop") -> str:
    base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": MODEL, "usage": None}
    half = len(text) // 2
    return sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
               {**base, "choices": [{"index": 0, "delta": {"content": text[:half]}, "finish_reason": None}]},
               {**base, "choices": [{"index": 0, "delta": {"content": text[half:]}, "finish_reason": None}]},
               {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
               {**base, "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                                 "total_tokens": prompt_tokens + completion_tokens}})


def route_answers(page, answers):
    """Answer every chat request with the next canned text; returns the request bodies."""
    bodies = []
    texts = iter(answers)

    def handle(route):
        bodies.append(json.loads(route.request.post_data))
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=canned_answer(next(texts)))

    page.route("**/api/ai/chat/completions", handle)
    return bodies


def wait_until(check, timeout=20.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()
