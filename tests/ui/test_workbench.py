"""The workbench (/) and the model page (/docs/models/ID) in a real browser.

Playwright drives Chromium (Debian's /usr/bin/chromium, or $CHROMIUM) against a live server on the
demo model. A few tests replace the server's answer with a canned event stream (page.route) where
the content matters (HTML in the output, error shapes); the others talk to the real server.
The screenshots in docs/screenshots are written here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Error as PlaywrightError  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
from server_process import ServerProcess  # noqa: E402

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


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keyed_server(demo_data_dir):
    proc = ServerProcess(demo_data_dir, "--api-key", "secret").wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser():
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


def _new_page(browser, viewport=DESKTOP, **options):
    context = browser.new_context(viewport=viewport, **options)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda err: page.errors.append(str(err)))
    return page


@pytest.fixture
def page(browser):
    page = _new_page(browser)
    yield page
    page.context.close()
    assert not page.errors, f"JavaScript errors on the page: {page.errors}"


# ---- helpers -----------------------------------------------------------------------------------

def open_workbench(page, server, path="/"):
    page.goto(server.url + path)
    expect(page.locator("#model-card .mc-name")).to_be_visible()
    return page


def set_param(scope, name, value):
    """Type a value into a generated parameter control (the number box of a slider too)."""
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


# ---- the workbench -----------------------------------------------------------------------------

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


def test_parameter_controls_come_from_the_schema(page, server):
    bodies = route_answers(page, ["one", "two"])
    open_workbench(page, server)
    params = page.locator(".params")
    temperature = params.locator('[data-param="temperature"]')
    slider = temperature.locator("input[type=range]")
    assert (slider.get_attribute("min"), slider.get_attribute("max")) == ("0", "2")
    expect(temperature.locator("input[type=number]")).to_have_value("1")
    expect(temperature.locator(".param-help")).to_contain_text("Sampling temperature")
    expect(params.locator('[data-param="top_p"] input[type=range]')).to_have_attribute("min", "0.01")
    expect(params.locator('[data-param="presence_penalty"] input[type=range]')).to_have_attribute("min", "-2")
    expect(params.locator('[data-param="top_k"] input[type=number]')).to_have_attribute("min", "-1")
    expect(params.locator('[data-param="repetition_penalty"] .param-help')).to_contain_text("default 1")
    for name in ("max_tokens", "stop", "seed", "frequency_penalty", "min_p", "min_tokens", "ignore_eos",
                 "logit_bias", "stop_token_ids", "user"):
        expect(params.locator(f'[data-param="{name}"]')).to_have_count(1)
    for name in ("model", "messages", "stream", "n", "logprobs", "tools"):
        expect(params.locator(f'[data-param="{name}"]')).to_have_count(0)

    # Changing a value back to its default sends nothing for it.
    set_param(page, "temperature", 0.3)
    set_param(page, "temperature", 1)
    set_param(page, "seed", 7)
    params.locator('[data-param="stop"] textarea').fill("END")
    params.locator("details.advanced summary").click()
    params.locator('[data-param="ignore_eos"] input').check()
    params.locator('[data-param="logit_bias"] textarea').fill('{"2": -100}')
    params.locator('[data-param="stop_token_ids"] input').fill("2, 13")
    send(page, "Hi")
    expect(page.locator(".msg.assistant .msg-text")).to_have_text("one")
    sent = {k: v for k, v in bodies[0].items() if k not in ("model", "messages", "stream", "stream_options")}
    assert sent == {"seed": 7, "stop": "END", "ignore_eos": True, "logit_bias": {"2": -100}, "stop_token_ids": [2, 13]}
    # Two stop strings go as a list; an invalid value blocks sending and says why.
    params.locator('[data-param="stop"] textarea').fill("END\n\\n\\n")
    params.locator('[data-param="logit_bias"] textarea').fill("{not json")
    expect(params.locator('[data-param="logit_bias"] .param-error')).to_have_text("Not valid JSON.")
    send(page, "Again")
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator("#toast")).to_contain_text("logit_bias")
    params.locator('[data-param="logit_bias"] .param-reset').click()
    page.locator("#send-btn").click()
    expect(page.locator(".msg.assistant").last.locator(".msg-text")).to_have_text("two")
    assert bodies[1]["stop"] == ["END", "\n\n"] and "logit_bias" not in bodies[1]
    page.get_by_role("button", name="Reset all").click()
    expect(page.locator(".pane .chips")).to_have_text("default parameters")


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


def test_the_curl_call_of_the_api_tab_works(page, server):
    open_workbench(page, server)
    set_param(page, "max_tokens", 16)
    set_param(page, "temperature", 0.5)
    page.locator("#prompt").fill("Say hello in one word.")
    page.locator("#tab-api").click()
    curl = page.locator("#snippet-curl").text_content()
    python = page.locator("#snippet-python").text_content()
    openai = page.locator("#snippet-openai").text_content()
    assert f"curl -X POST {server.url}/api/ai/chat/completions" in curl
    assert '"max_tokens": 16' in curl and '"temperature": 0.5' in curl and "top_p" not in curl
    assert "$MISTRAL_SERVE_API_KEY" in curl and "Say hello in one word." in curl
    assert f'"{server.url}/api/ai/chat/completions"' in python and "MISTRAL_SERVE_API_KEY" in python
    assert f'base_url="{server.url}/v1"' in openai and "max_tokens=16" in openai
    for code in (python, openai):
        compile(code, "<snippet>", "exec")
    copy = page.locator('[data-snippet="curl"] button')
    copy.click()
    expect(copy).to_have_text(re.compile("Copied|Copy failed"))

    env = {**os.environ, "MISTRAL_SERVE_API_KEY": "anything"}
    if shutil.which("curl"):
        run = subprocess.run(["bash", "-c", curl + " -sS -w '\\n%{http_code}'"], capture_output=True, text=True,
                             env=env, timeout=120)
        assert run.returncode == 0, run.stderr
        payload, _, status = run.stdout.rpartition("\n")
        status, body = int(status), json.loads(payload)
    else:  # replay what the command says: URL, headers and the -d body
        url = re.search(r"curl -X POST (\S+)", curl).group(1)
        data = re.search(r"-d '(.*)'\s*$", curl, re.S).group(1).replace("'\\''", "'")
        response = httpx.post(url, content=data, timeout=120, headers={
            "Content-Type": "application/json", "Authorization": "Bearer anything"})
        status, body = response.status_code, response.json()
    assert status == 200, body
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] <= 16


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


# ---- output format and tools ----------------------------------------------------------------------

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


def test_screenshots(browser, server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = _new_page(browser, DESKTOP)
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

    page = _new_page(browser, PHONE, is_mobile=True, has_touch=True)
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


# ---- the model page ------------------------------------------------------------------------------

def test_the_model_page(page, server):
    response = page.goto(f"{server.url}/docs/models/{MODEL}")
    assert response.status == 200
    expect(page.locator("h1")).to_contain_text("Mistral 7B")
    expect(page.locator("#model-id")).to_have_text(MODEL)
    metrics = page.locator("#metrics")
    for label in ("Parameter Count", "Mixture of Experts", "Context Length", "Multilingual", "Quantization"):
        expect(metrics).to_contain_text(label)
    expect(metrics).to_contain_text("32,768 tokens")
    expect(page.get_by_role("link", name=re.compile("Try it in the workbench"))).to_have_attribute(
        "href", f"/?model={MODEL}")

    tabs = page.locator(".tabs-examples > [role=tablist] > [role=tab]")
    expect(tabs).to_have_text(["Minimal", "Basic parameters", "All parameters"])
    expect(page.locator("#example-minimal")).to_be_visible()
    expect(page.locator("#example-all")).to_be_hidden()
    expect(page.locator("#example-minimal pre").first).to_contain_text(f"curl -X POST {server.url}/api/ai/chat/completions")
    tabs.nth(2).click()
    expect(page.locator("#example-all")).to_be_visible()
    expect(page.locator("#example-minimal")).to_be_hidden()
    expect(page.locator("#lang-all-curl pre")).to_contain_text('"top_p": 1.0')
    page.locator("#lang-all-python-tab").click()
    expect(page.locator("#lang-all-python pre")).to_contain_text(f'"{server.url}/api/ai/chat/completions"')
    expect(page.locator("#lang-all-python pre")).to_contain_text('"stream": False')
    python = page.locator("#lang-all-python pre").text_content()
    compile(python, "<example>", "exec")
    expect(page.locator("main")).to_contain_text(f"curl -H \"Authorization: Bearer $MISTRAL_SERVE_API_KEY\" {server.url}/api/ai/models/{MODEL}")

    table = page.locator("#request-parameters-table")
    expect(table.locator("#param-temperature")).to_contain_text("0 to 2")
    expect(table.locator("#param-temperature")).to_contain_text("1.0")
    expect(table.locator("#param-temperature")).to_contain_text("Sampling temperature")
    expect(table.locator("#param-top_p")).to_contain_text("> 0 and ≤ 1")
    expect(table.locator("#param-messages")).to_contain_text("required")
    expect(table.locator("#param-stop")).to_contain_text("up to 4 items")
    tabs.nth(0).click()
    page.set_viewport_size({"width": 1280, "height": 1180})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / "model-page.png"))


def test_the_model_page_without_javascript_and_for_an_unknown_model(browser, server):
    page = _new_page(browser, java_script_enabled=False)
    try:
        page.goto(f"{server.url}/docs/models/{MODEL}")
        for panel in ("#example-minimal", "#example-basic", "#example-all", "#lang-all-python"):
            expect(page.locator(panel)).to_be_visible()
        expect(page.locator("#request-parameters-table tbody tr").first).to_be_visible()
        response = page.goto(f"{server.url}/docs/models/<script>alert(1)</script>")
        assert response.status == 404
        expect(page.locator("h1")).to_have_text("Model not found")
        expect(page.locator("main")).to_contain_text("<script>alert(1)</script>")
        assert page.locator("main script").count() == 0
        expect(page.get_by_role("link", name=re.compile("Mistral 7B"))).to_have_attribute("href", f"/docs/models/{MODEL}")
    finally:
        page.context.close()


def test_the_pages_are_public_on_a_server_with_a_key(keyed_server):
    url = keyed_server.url
    assert httpx.get(f"{url}/api/ai/models").status_code == 401
    home = httpx.get(f"{url}/")
    assert home.status_code == 200 and "Content-Security-Policy" in home.headers
    assert httpx.get(f"{url}/static/js/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{url}/docs/models/{MODEL}").status_code == 200
    # No way out of the static folder (this file exists, four levels up, in a checkout).
    assert httpx.get(f"{url}/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/docs/screenshots/model-page.png").status_code == 404
    assert httpx.get(f"{url}/static/nope.js").status_code == 404
