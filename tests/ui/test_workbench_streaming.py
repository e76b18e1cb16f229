"""The workbench (/) in Chromium against the live demo server: an answer streams in with its numbers,
Stop ends the request on the server, and compare mode streams panes side by side, each with its own
settings or model.
"""

from __future__ import annotations

import re

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from support.workbench import (  # noqa: E402
    GENERATION_TIMEOUT,
    MODEL,
    chat_bodies,
    open_params,
    open_workbench,
    route_answers,
    send,
    set_param,
    wait_until,
    watch_streaming,
)


def test_an_answer_streams_in_with_its_numbers(page, server):
    open_workbench(page, server)
    card = page.locator("#model-card")
    expect(card).to_contain_text("demo: random weights")
    expect(card).to_contain_text("32,768 tokens")
    expect(card.get_by_role("link", name="Model page")).to_have_attribute("href", f"/docs/models/{MODEL}")
    set_param(page, "max_tokens", 64)
    bodies = chat_bodies(page)
    watch_streaming(page)
    send(page, "Hello, what can you do?")

    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_attribute("data-status", "done", timeout=GENERATION_TIMEOUT)
    text = answer.locator(".msg-text").text_content()
    assert text.strip()
    lengths = page.evaluate("window.__lengths")
    assert len({n for n in lengths if n > 0}) >= 2, f"the text did not grow while streaming: {lengths}"
    expect(answer.locator("[data-stat=in]")).to_have_text(re.compile(r"^\d+ in$"))
    expect(answer.locator("[data-stat=out]")).to_have_text(re.compile(r"^\d+ out$"))
    expect(answer.locator("[data-stat=ttft]")).to_have_text(re.compile(r"^TTFT \d+(\.\d+)? m?s$"))
    expect(answer.locator("[data-stat=tps]")).to_have_text(re.compile(r"tok/s$"))
    expect(answer.locator("[data-stat=finish]")).to_have_text(re.compile(r"^finish: (length|stop)$"))
    # Only what the user changed goes out, with the streaming fields.
    assert len(bodies) == 1
    assert set(bodies[0]) == {"model", "messages", "max_tokens", "stream", "stream_options"}
    assert bodies[0]["max_tokens"] == 64 and bodies[0]["stream_options"] == {"include_usage": True}
    assert bodies[0]["messages"] == [{"role": "user", "content": "Hello, what can you do?"}]


def test_stop_ends_the_stream_and_the_request_on_the_server(page, server):
    open_workbench(page, server)
    set_param(page, "max_tokens", 4000)
    send(page, "Tell me a very long story.")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".msg-text")).not_to_have_text("", timeout=GENERATION_TIMEOUT)
    assert wait_until(lambda: server.metric("mistral_serve_running_requests") >= 1, timeout=10)
    expect(page.locator("#stop-btn")).to_be_visible()
    page.locator("#stop-btn").click()
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(answer.locator("[data-stat=finish]")).to_have_text("stopped")
    expect(page.locator("#send-btn")).to_be_visible()
    # Closing the stream aborted the generation: nothing is left running on the server.
    assert wait_until(lambda: server.metric("mistral_serve_running_requests") == 0, timeout=15), \
        "the server still generates after Stop"
    out = int(re.sub(r"\D", "", answer.locator("[data-stat=out]").text_content()))
    assert out < 4000


def test_compare_mode_streams_two_settings_side_by_side(page, server):
    open_workbench(page, server)
    page.locator("#compare-btn").click()
    panes = page.locator(".pane")
    expect(panes).to_have_count(2)
    expect(page.locator("#compare-btn")).to_have_text("Add pane")
    for pane, temperature in ((panes.nth(0), 0), (panes.nth(1), 1.5)):
        open_params(pane)
        set_param(pane, "temperature", temperature)
        set_param(pane, "max_tokens", 32)
        pane.locator(".params-close").click()
    expect(panes.nth(0).locator(".chips")).to_contain_text("temperature 0")
    expect(panes.nth(1).locator(".chips")).to_contain_text("temperature 1.5")
    bodies = chat_bodies(page)
    watch_streaming(page)
    send(page, "Compare these two settings.")
    for i in range(2):
        answer = panes.nth(i).locator(".msg.assistant")
        expect(answer).to_have_attribute("data-status", "done", timeout=GENERATION_TIMEOUT)
        assert answer.locator(".msg-text").text_content().strip()
        expect(answer.locator("[data-stat=out]")).to_be_visible()
    assert sorted(b["temperature"] for b in bodies) == [0, 1.5]
    assert all(b["max_tokens"] == 32 and "top_p" not in b for b in bodies)
    assert page.evaluate("window.__maxStreaming") == 2, "the panes did not stream at the same time"
    # A third pane can be added and any pane removed.
    page.locator("#compare-btn").click()
    expect(panes).to_have_count(3)
    panes.nth(2).get_by_role("button", name="Remove pane C").click()
    expect(panes).to_have_count(2)


def test_each_pane_can_have_its_own_model_when_several_are_served(page, server):
    models = httpx.get(f"{server.url}/api/ai/models").json()
    other = {**models["data"][0], "id": "other-model", "display_name": "Other model", "demo": False}
    models["data"].append(other)
    page.route("**/api/ai/models", lambda route: route.fulfill(json=models))
    bodies = route_answers(page, ["from A", "from B"])
    page.goto(f"{server.url}/?model=other-model")
    card = page.locator("#model-card")
    expect(card.locator(".mc-name")).to_have_text("Other model")
    expect(card.locator(".demo-badge")).to_have_count(0)
    expect(page.locator("#model-select")).to_have_value("other-model")
    page.locator("#model-select").select_option(MODEL)
    expect(card).to_contain_text("demo: random weights")
    assert page.url.endswith(f"?model={MODEL}")
    page.locator("#compare-btn").click()
    pane_b = page.locator(".pane").nth(1)
    pane_b.get_by_label("Model for pane B").select_option("other-model")
    send(page, "Who are you?")
    expect(pane_b.locator(".msg.assistant")).to_have_attribute("data-status", "done")
    expect(page.locator(".pane").nth(0).locator(".msg.assistant")).to_have_attribute("data-status", "done")
    assert sorted(b["model"] for b in bodies) == [MODEL, "other-model"]
