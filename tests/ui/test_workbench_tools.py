"""The workbench's output format and tools: JSON schema mode against the real server, tool calls as
cards whose results continue the conversation, and canned tool-call streams (joined from pieces,
shown as text, in compare mode).
"""

from __future__ import annotations

import json

import jsonschema
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from support.workbench import (  # noqa: E402
    GENERATION_TIMEOUT,
    MODEL,
    canned_answer,
    chat_bodies,
    open_workbench,
    send,
    set_param,
    sse,
)


def choose_format(page, label):
    page.locator("#format-options label", has_text=label).click()


def tool_call_answer(calls, text="") -> str:
    """A streamed answer that calls tools, arguments in two fragments, as the server streams them."""
    base = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 0, "model": MODEL, "usage": None}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]}]
    for i, (call_id, name, arguments) in enumerate(calls):
        half = len(arguments) // 2
        chunks += [
            {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                {"index": i, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}}]},
            {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                {"index": i, "function": {"arguments": arguments[:half]}}]}}]},
            {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                {"index": i, "function": {"arguments": arguments[half:]}}]}}]},
        ]
    chunks += [{**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
               {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}]
    return sse(*chunks)


def test_json_schema_mode_answers_match_the_schema_in_the_editor(page, server):
    open_workbench(page, server)
    choose_format(page, "JSON schema")
    editor = page.locator("#schema-text")
    expect(editor).to_be_visible()
    expect(page.locator("#schema-name")).to_have_value("person")
    expect(page.locator("#mode-chips")).to_have_text("JSON schema: person")
    schema = json.loads(editor.input_value())
    set_param(page, "max_tokens", 60)
    set_param(page, "seed", 7)  # the same answer on every run
    bodies = chat_bodies(page)
    send(page, "Describe a person.")
    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_attribute("data-status", "done", timeout=GENERATION_TIMEOUT)
    jsonschema.validate(json.loads(answer.locator(".msg-text").text_content()), schema)
    assert bodies[0]["response_format"] == {"type": "json_schema",
                                            "json_schema": {"name": "person", "schema": schema, "strict": True}}
    # The API tab sends the same field.
    page.locator("#tab-api").click()
    assert '"response_format": {' in page.locator("#snippet-curl").text_content()
    openai = page.locator("#snippet-openai").text_content()
    assert "response_format={" in openai and '"additionalProperties": False' in openai
    compile(openai, "<snippet>", "exec")
    page.locator("#tab-chat").click()

    # Invalid JSON: said under the editor, and nothing is sent.
    editor.fill('{"type": "object",')
    error = page.locator("#schema-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Not valid JSON")
    expect(editor).to_have_attribute("aria-invalid", "true")
    page.locator("#schema-name").fill("has spaces")
    expect(page.locator("#schema-name-error")).to_contain_text("1 to 64 letters")
    send(page, "Again")
    expect(page.locator("#toast")).to_contain_text("Schema name")
    page.locator("#schema-name").fill("person")
    page.locator("#send-btn").click()
    expect(page.locator("#toast")).to_contain_text("JSON schema: Not valid JSON")
    expect(page.locator(".msg.user")).to_have_count(1)
    assert len(bodies) == 1
    # Valid JSON the server refuses: its 400 is shown as a sentence.
    editor.fill('{"type": "wat"}')
    expect(error).to_be_hidden()
    page.locator("#send-btn").click()
    refused = page.locator(".msg.assistant").last.locator(".error-box")
    expect(refused).to_contain_text("The server refused the output format")
    expect(refused).to_contain_text("invalid JSON Schema")
    assert '"error"' not in refused.inner_text()
    page.locator("#schema-example").click()
    expect(error).to_be_hidden()
    assert json.loads(editor.input_value()) == schema


def test_tool_calls_show_as_cards_and_results_continue_the_conversation(page, server):
    open_workbench(page, server)
    page.locator("#tools-example").click()
    tools = json.loads(page.locator("#tools-text").input_value())
    parameters = tools[0]["function"]["parameters"]
    choice = page.locator("#tool-choice")
    expect(choice.locator("option")).to_have_text(["auto", "none", "required", "function: get_weather"])
    choice.select_option("required")
    expect(page.locator("#mode-chips")).to_have_text("1 tool · required")
    # Below ~60 tokens the server cuts a forced call short and returns it as text; 100 is safe.
    set_param(page, "max_tokens", 100)
    set_param(page, "seed", 3)
    bodies = chat_bodies(page)
    send(page, "What is the weather in Paris?")
    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_attribute("data-status", "done", timeout=GENERATION_TIMEOUT)
    expect(answer.locator("[data-stat=finish]")).to_have_text("finish: tool_calls")
    cards = answer.locator(".tool-call")
    assert cards.count() >= 1
    ids = []
    for i in range(cards.count()):
        expect(cards.nth(i).locator(".tc-name")).to_have_text("get_weather")
        jsonschema.validate(json.loads(cards.nth(i).locator(".tc-args").text_content()), parameters)
        ids.append(cards.nth(i).locator(".tc-id").text_content())
    assert bodies[0]["tools"] == tools and bodies[0]["tool_choice"] == "required"
    assert "parallel_tool_calls" not in bodies[0]

    # Answer every call: the results go back as tool messages and the model carries on.
    fields = answer.locator(".tool-result-input")
    expect(fields).to_have_count(len(ids))
    for i in range(len(ids)):
        fields.nth(i).fill('{"temperature": 18, "sky": "sunny"}')
    answer.locator(".tool-form button[type=submit]").click()
    expect(page.locator(".msg.tool .tool-result")).to_have_count(len(ids))
    expect(page.locator(".msg.assistant")).to_have_count(2)
    follow = page.locator(".msg.assistant").last
    expect(follow).to_have_attribute("data-status", "done", timeout=GENERATION_TIMEOUT)
    expect(page.locator(".error-box")).to_have_count(0)
    sent = bodies[1]["messages"]
    assert sent[0] == {"role": "user", "content": "What is the weather in Paris?"}
    assert sent[1]["role"] == "assistant" and sent[1]["content"] is None
    assert [c["id"] for c in sent[1]["tool_calls"]] == ids
    assert sent[2:] == [{"role": "tool", "tool_call_id": i, "content": '{"temperature": 18, "sky": "sunny"}'}
                        for i in ids]
    # After results, a forced choice goes back to auto (left out) so that the model can answer.
    assert bodies[1]["tools"] == tools and "tool_choice" not in bodies[1]

    page.locator("#tab-api").click()
    curl = page.locator("#snippet-curl").text_content()
    assert '"tools": [' in curl and '"tool_call_id": ' in curl and '"tool_calls": [' in curl
    for snippet in ("#snippet-python", "#snippet-openai"):
        code = page.locator(snippet).text_content()
        assert "tools" in code
        compile(code, "<snippet>", "exec")


EVIL_ARGUMENTS = '{"city": "<script>window.__xss=1</script><img src=x onerror=\\"window.__xss=2\\">"}'


def route_two_tool_calls(page):
    """Answer a chat request with two calls, streamed in pieces (the first with HTML in its arguments,
    the second with HTML as its name), and the request that sends their results with text; returns
    the request bodies."""
    bodies = []

    def handle(route):
        body = json.loads(route.request.post_data)
        bodies.append(body)
        if body["messages"][-1]["role"] == "tool":
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=canned_answer("It is sunny."))
        else:
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=tool_call_answer(
                [("aB3dE5gH7", "get_weather", EVIL_ARGUMENTS), ("zY9xW8vU7", "<b>x</b>", "{}")]))

    page.route("**/api/ai/chat/completions", handle)
    return bodies


def force_get_weather(page, server):
    """The workbench with one tool, get_weather, forced, and parallel calls off."""
    open_workbench(page, server)
    page.locator("#tools-text").fill(json.dumps([{"type": "function", "function": {"name": "get_weather"}}]))
    page.locator("#tool-choice").select_option(label="function: get_weather")
    page.locator("#parallel-calls").uncheck()


def test_json_output_and_a_forced_tool_call_cannot_go_together(page, server):
    bodies = route_two_tool_calls(page)
    force_get_weather(page, server)
    # JSON output and forced calls cannot go together: said, and not sent.
    choose_format(page, "JSON object")
    expect(page.locator("#tools-conflict")).to_contain_text("cannot be combined")
    send(page, "Weather?")
    expect(page.locator("#toast")).to_contain_text("cannot be combined")
    expect(page.locator(".msg.user")).to_have_count(0)
    choose_format(page, "Text")
    expect(page.locator("#tools-conflict")).to_be_hidden()
    assert bodies == []


def test_tool_calls_stream_in_pieces_and_are_joined(page, server):
    bodies = route_two_tool_calls(page)
    force_get_weather(page, server)
    send(page, "Weather?")
    cards = page.locator(".pane .tool-call")
    expect(cards).to_have_count(2)
    # The fragments are joined, pretty-printed, and shown as text.
    expect(cards.nth(0).locator(".tc-args")).to_have_text(json.dumps(json.loads(EVIL_ARGUMENTS), indent=2))
    expect(cards.nth(0).locator(".tc-id")).to_have_text("aB3dE5gH7")
    assert len(bodies) == 1
    assert bodies[0]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert bodies[0]["parallel_tool_calls"] is False


def test_tool_calls_and_their_results_are_text_never_html(page, server):
    route_two_tool_calls(page)
    force_get_weather(page, server)
    send(page, "Weather?")
    cards = page.locator(".pane .tool-call")
    expect(cards).to_have_count(2)
    expect(cards.nth(1).locator(".tc-name")).to_have_text("<b>x</b>")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator(".messages script, .messages img, .messages b").count() == 0
    fields = page.locator(".tool-result-input")
    fields.nth(0).fill("sunny")
    fields.nth(1).fill("<i>18</i>")
    fields.nth(1).press("Control+Enter")
    expect(page.locator(".msg.assistant").last.locator(".msg-text")).to_have_text("It is sunny.")
    expect(page.locator(".msg.tool .tc-args")).to_have_text(["sunny", "<i>18</i>"])
    assert page.locator(".messages i").count() == 0


def test_tool_calls_work_in_compare_mode(page, server):
    bodies = route_two_tool_calls(page)
    force_get_weather(page, server)
    page.locator("#compare-btn").click()
    panes = page.locator(".pane")
    expect(panes).to_have_count(2)
    send(page, "Weather?")
    for i in range(2):
        cards = panes.nth(i).locator(".tool-call")
        expect(cards).to_have_count(2)
        expect(cards.nth(0).locator(".tc-args")).to_have_text(json.dumps(json.loads(EVIL_ARGUMENTS), indent=2))
        expect(cards.nth(0).locator(".tc-id")).to_have_text("aB3dE5gH7")
        expect(cards.nth(1).locator(".tc-name")).to_have_text("<b>x</b>")
    assert len(bodies) == 2
    for body in bodies:
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
        assert body["parallel_tool_calls"] is False

    # Pane B sends its results and goes on; pane A still waits for its own.
    pane_b = panes.nth(1)
    fields = pane_b.locator(".tool-result-input")
    fields.nth(0).fill("sunny")
    pane_b.get_by_role("button", name="Send results").click()
    expect(pane_b.locator(".tool-form .field-error")).to_have_text("Enter a result for every call.")
    fields.nth(1).fill("<i>18</i>")
    fields.nth(1).press("Control+Enter")
    expect(pane_b.locator(".msg.assistant").last.locator(".msg-text")).to_have_text("It is sunny.")
    expect(pane_b.locator(".msg.tool .tc-args")).to_have_text(["sunny", "<i>18</i>"])
    expect(panes.nth(0).locator(".tool-form")).to_be_visible()
    expect(panes.nth(0).locator(".msg.assistant")).to_have_count(1)
    assert len(bodies) == 3
    assert [m["role"] for m in bodies[2]["messages"]] == ["user", "assistant", "tool", "tool"]
    assert "tool_choice" not in bodies[2] and bodies[2]["parallel_tool_calls"] is False
