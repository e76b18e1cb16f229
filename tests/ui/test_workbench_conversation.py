"""Editing a conversation in the workbench (canned answers, page.route): Enter and Shift+Enter,
edit, regenerate and clear, and model output shown as text, never as HTML.
"""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from support.workbench import open_workbench, route_answers, send  # noqa: E402


def test_model_output_is_shown_as_text_never_as_html(page, server):
    payload = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2"><b>bold?</b>'
    bodies = route_answers(page, [payload])
    open_workbench(page, server)
    send(page, "<i>my own message</i>")
    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_attribute("data-status", "done")
    expect(answer.locator(".msg-text")).to_have_text(payload)
    expect(page.locator(".msg.user .msg-text")).to_have_text("<i>my own message</i>")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator(".messages script, .messages img, .messages b, .messages i").count() == 0
    expect(answer.locator("[data-stat=in]")).to_have_text("5 in")
    expect(answer.locator("[data-stat=out]")).to_have_text("7 out")
    expect(answer.locator("[data-stat=finish]")).to_have_text("finish: stop")
    assert bodies[0]["messages"][-1]["content"] == "<i>my own message</i>"


def test_enter_sends_and_shift_enter_starts_a_new_line(page, server):
    bodies = route_answers(page, ["first answer"])
    open_workbench(page, server)
    prompt = page.locator("#prompt")
    prompt.click()
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    expect(prompt).to_have_value("line one\nline two")
    expect(page.locator(".msg.user")).to_have_count(0)
    page.keyboard.press("Enter")
    expect(page.locator(".msg.user .msg-text")).to_have_text("line one\nline two")
    expect(prompt).to_have_value("")
    expect(page.locator(".msg.assistant .msg-text")).to_have_text("first answer")
    assert bodies[0]["messages"] == [{"role": "user", "content": "line one\nline two"}]


def test_edit_regenerate_and_clear(page, server):
    bodies = route_answers(page, ["answer one", "answer two", "answer three", "answer four"])
    open_workbench(page, server)
    page.locator("#system-prompt").fill("Be brief.")
    send(page, "first question")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".msg-text")).to_have_text("answer one")
    page.locator("#regenerate-btn").click()
    expect(answer.locator(".msg-text")).to_have_text("answer two")
    assert bodies[1]["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "first question"}]
    # Edit the assistant's answer: the next request carries the edited text.
    answer.get_by_role("button", name="Edit").click()
    page.locator(".edit-area").fill("edited answer")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".msg.assistant .msg-text")).to_have_text("edited answer")
    send(page, "second question")
    expect(page.locator(".msg.assistant").last.locator(".msg-text")).to_have_text("answer three")
    assert bodies[2]["messages"][2] == {"role": "assistant", "content": "edited answer"}
    # Edit the first question: the conversation restarts from there.
    page.locator(".msg.user").first.hover()
    page.locator(".msg.user").first.get_by_role("button", name="Edit").click()
    page.locator(".edit-area").fill("better question")
    page.locator(".edit-area").press("Enter")
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator(".msg.assistant .msg-text")).to_have_text("answer four")
    assert bodies[3]["messages"][-1] == {"role": "user", "content": "better question"}
    page.locator("#clear-btn").click()
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator(".empty").first).to_be_visible()
