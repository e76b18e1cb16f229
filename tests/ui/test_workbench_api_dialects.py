"""The API tab's dialects: the picker (keyboard, kept in this browser) switches the snippets to each
dialect's endpoint, headers and body for the current settings, notes what a dialect leaves out, and
copies what it shows; each dialect's cURL body, posted to the live server, answers where the
snippet's Python reads the answer, and the Python snippets (requests and the dialect's package) run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from support.workbench import open_workbench, set_param  # noqa: E402

TITLES = {"chat": "OpenAI Chat Completions", "responses": "OpenAI Responses", "anthropic": "Anthropic Messages",
          "ollama": "Ollama"}
PATHS = {"chat": "/api/ai/chat/completions", "responses": "/v1/responses", "anthropic": "/v1/messages",
         "ollama": "/api/chat"}
SDK = {"chat": "openai", "responses": "openai", "anthropic": "anthropic", "ollama": "ollama"}
KEY = "anything"
LIVE = ["chat", "responses", "anthropic", "ollama"]
WEATHER_TOOL = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                   "required": ["city"], "additionalProperties": False}}}]


def pick(page, dialect):
    page.get_by_role("radio", name=TITLES[dialect]).check()
    expect(page.locator("#api-endpoint")).to_contain_text(f"POST {PATHS[dialect]}")


def shown(page, snippet):
    return page.locator(f"#snippet-{snippet}").text_content()


def curl_request(curl: str) -> tuple[str, dict, dict]:
    """The URL, headers (the key variable set to KEY) and JSON body of the cURL snippet."""
    url = re.search(r"curl (?:-N )?-X POST (\S+)", curl).group(1)
    headers = {name: value.replace("$MISTRAL_SERVE_API_KEY", KEY)
               for name, value in re.findall(r'-H "([^:"]+): ([^"]*)"', curl)}
    data = re.search(r"-d '(.*)'\s*$", curl, re.DOTALL).group(1).replace("'\\''", "'")
    return url, headers, json.loads(data)


def answer_text(dialect: str, body: dict) -> str:
    """The answer where the dialect's Python snippet reads it."""
    if dialect == "chat":
        return body["choices"][0]["message"]["content"]
    if dialect == "responses":
        return "".join(part["text"] for item in body["output"] if item["type"] == "message"
                       for part in item["content"] if part["type"] == "output_text")
    if dialect == "anthropic":
        return "".join(block["text"] for block in body["content"] if block["type"] == "text")
    return body["message"]["content"]


def run_python(code: str) -> str:
    """Run a Python snippet as a person would (the key in the environment); its output."""
    env = {**os.environ, "MISTRAL_SERVE_API_KEY": KEY}
    env.pop("OLLAMA_API_KEY", None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180,
                         check=False)
    assert run.returncode == 0, f"{run.stderr}\n---\n{code}"
    return run.stdout


def settings(page, server, *, system="Answer in one short sentence.", prompt="Say hello."):
    open_workbench(page, server)
    set_param(page, "max_tokens", 12)
    set_param(page, "temperature", 0)  # greedy: the same answer on every run
    page.locator("#system-prompt").fill(system)
    page.locator("#prompt").fill(prompt)
    page.locator("#tab-api").click()


# ---- the picker --------------------------------------------------------------------------------

def test_the_picker_switches_each_snippet_to_the_dialect(page, server):
    open_workbench(page, server)
    set_param(page, "max_tokens", 16)
    set_param(page, "temperature", 0.5)
    set_param(page, "seed", 7)
    page.locator("#system-prompt").fill("Be brief.")
    page.locator("#prompt").fill("Say hello in one word.")
    page.locator("#tab-api").click()

    radios = page.locator("#api-dialects input[type=radio]")
    expect(radios).to_have_count(4)
    expect(page.get_by_role("group", name="API")).to_be_visible()
    expect(page.get_by_role("radio", name=TITLES["chat"])).to_be_checked()
    expect(page.locator("#api-endpoint")).to_have_text("POST /api/ai/chat/completions (also at /v1/chat/completions)")
    expect(page.locator("#api-left-out")).to_be_hidden()
    assert f"curl -X POST {server.url}/api/ai/chat/completions" in shown(page, "curl")

    # Anthropic: its headers, max_tokens and system apart; seed has no place there, and the note says so.
    pick(page, "anthropic")
    curl = shown(page, "curl")
    assert f"curl -X POST {server.url}/v1/messages" in curl
    assert '-H "x-api-key: $MISTRAL_SERVE_API_KEY"' in curl and '-H "anthropic-version: 2023-06-01"' in curl
    _, _, body = curl_request(curl)
    assert body == {"model": body["model"], "max_tokens": 16, "system": "Be brief.",
                    "messages": [{"role": "user", "content": "Say hello in one word."}], "temperature": 0.5}
    note = page.locator("#api-left-out")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Left out: seed.")
    expect(page.locator("[data-snippet]")).to_have_count(3)
    for snippet in ("python", "anthropic"):
        assert f'"{server.url}' in shown(page, snippet)
        compile(shown(page, snippet), "<snippet>", "exec")

    # The keyboard moves through the radio group: Ollama is next.
    page.get_by_role("radio", name=TITLES["anthropic"]).focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("radio", name=TITLES["ollama"])).to_be_checked()
    expect(page.get_by_role("radio", name=TITLES["ollama"])).to_be_focused()
    expect(page.locator("#api-endpoint")).to_have_text("POST /api/chat")
    _, headers, body = curl_request(shown(page, "curl"))
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["options"] == {"temperature": 0.5, "seed": 7, "num_predict": 16} and body["stream"] is False
    expect(note).to_be_hidden()
    for snippet in ("python", "ollama"):
        compile(shown(page, snippet), "<snippet>", "exec")

    # A changed setting shows in the dialect's own field at once.
    page.locator("#tab-chat").click()
    set_param(page, "top_p", 0.9)
    page.locator("#tab-api").click()
    page.locator("#api-stream").check()
    curl = shown(page, "curl")
    _, _, body = curl_request(curl)
    assert curl.startswith("curl -N -X POST") and body["stream"] is True and body["options"]["top_p"] == 0.9
    assert "if chunk.get(\"done\"):" in shown(page, "python")

    # Responses: instructions and max_output_tokens; the seed as the server's extension.
    pick(page, "responses")
    _, _, body = curl_request(shown(page, "curl"))
    assert body["instructions"] == "Be brief." and body["input"] == "Say hello in one word."
    assert body["max_output_tokens"] == 16 and body["top_p"] == 0.9 and body["seed"] == 7
    expect(note).to_be_hidden()
    assert "client.responses.create(" in shown(page, "openai") and '"seed": 7' in shown(page, "openai")
    compile(shown(page, "openai"), "<snippet>", "exec")


def test_copy_copies_the_dialect_snippet_shown_and_the_choice_is_kept(page, server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    open_workbench(page, server)
    set_param(page, "max_tokens", 9)
    page.locator("#tab-api").click()
    pick(page, "anthropic")
    for snippet in ("curl", "python", "anthropic"):
        page.locator(f'[data-snippet="{snippet}"] button').click()
        expect(page.locator(f'[data-snippet="{snippet}"] button')).to_have_text("Copied ✓")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == shown(page, snippet)
        assert "/v1/messages" in copied or 'base_url="' in copied
        assert '"max_tokens": 9' in copied or "max_tokens=9" in copied

    # Kept in this browser, as the other settings are.
    assert page.evaluate("localStorage.getItem('mistral-serve.apiDialect')") == "anthropic"
    page.reload()
    expect(page.locator("#model-card .mc-name")).to_be_visible()
    page.locator("#tab-api").click()
    expect(page.get_by_role("radio", name=TITLES["anthropic"])).to_be_checked()
    assert f"{server.url}/v1/messages" in shown(page, "curl")
    # A value from elsewhere (an older version, say) falls back to chat.
    page.evaluate("localStorage.setItem('mistral-serve.apiDialect', 'nope')")
    page.reload()
    expect(page.locator("#model-card .mc-name")).to_be_visible()
    page.locator("#tab-api").click()
    expect(page.get_by_role("radio", name=TITLES["chat"])).to_be_checked()


# ---- against the live server -------------------------------------------------------------------

@pytest.mark.parametrize("dialect", LIVE)
def test_the_dialect_call_works_on_the_server(page, server, dialect):
    """The cURL body posted as it is: a 200, and an answer where the Python snippet reads it; then
    the requests and SDK snippets run, and the streamed ones too."""
    settings(page, server)
    pick(page, dialect)
    url, headers, body = curl_request(shown(page, "curl"))
    assert url == server.url + PATHS[dialect]
    response = httpx.post(url, json=body, headers=headers, timeout=120)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:300]}"
    assert answer_text(dialect, response.json())

    assert run_python(shown(page, "python")).strip()
    assert run_python(shown(page, SDK[dialect])).strip()
    page.locator("#api-stream").check()
    assert run_python(shown(page, "python")).strip()
    assert run_python(shown(page, SDK[dialect])).strip()


@pytest.mark.parametrize("dialect", LIVE)
def test_the_dialect_call_with_a_forced_tool_call_works_on_the_server(page, server, dialect):
    """A forced call: each Python snippet prints it, plain and streamed. Ollama has no tool_choice:
    there the note says so and the snippets run (the demo model rarely calls a tool unforced)."""
    open_workbench(page, server)
    set_param(page, "max_tokens", 40)
    page.locator("#tools-text").fill(json.dumps(WEATHER_TOOL))
    page.locator("#tool-choice").select_option(label="function: get_weather")
    page.locator("#prompt").fill("Weather in Paris?")
    page.locator("#tab-api").click()
    pick(page, dialect)
    url, headers, body = curl_request(shown(page, "curl"))
    assert body["tools"]
    response = httpx.post(url, json=body, headers=headers, timeout=120)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:300]}"
    forced = dialect != "ollama"
    if not forced:
        expect(page.locator("#api-left-out")).to_contain_text("tool_choice")
    for stream in (False, True):
        page.locator("#api-stream").set_checked(stream)
        for snippet in ("python", SDK[dialect]):
            out = run_python(shown(page, snippet))
            if forced:
                assert re.search(r"^tool call: .*get_weather", out, re.MULTILINE), f"{snippet} (stream {stream}) printed {out!r}"
