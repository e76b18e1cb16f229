"""The model page (/docs/models/ID) in Chromium, with and without JavaScript and for an unknown model
(writes docs/screenshots/model-page.png), and the pages staying public on a server with a key.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from support.workbench import MODEL, SHOTS, new_page  # noqa: E402


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


DIALECT_PATHS = {"responses": "/v1/responses", "anthropic": "/v1/messages", "ollama": "/api/chat"}


def test_the_model_page_shows_the_basic_request_in_the_other_apis(page, server):
    """The Basic request in each other dialect: the body the workbench's dialects.js makes of it,
    and one the server answers (the Responses and Ollama endpoints are being built elsewhere: their
    posts fail with a 404 until those land)."""
    page.goto(f"{server.url}/docs/models/{MODEL}")
    tabs = page.locator(".tabs-dialects > [role=tablist] > [role=tab]")
    expect(tabs).to_have_text(["OpenAI Responses", "Anthropic Messages", "Ollama"])
    expect(page.locator("#dialect-responses")).to_be_visible()
    expect(page.locator("#dialect-anthropic")).to_be_hidden()
    tabs.nth(1).click()
    expect(page.locator("#dialect-anthropic")).to_be_visible()
    expect(page.locator("#dialect-anthropic .endpoint")).to_have_text("POST /v1/messages")
    basic = {"model": MODEL, "messages": [{"role": "user", "content": "Hello, what can you do?"}],
             "temperature": 0.7, "max_tokens": 1024, "stream": False}
    failures = []
    for dialect, path in DIALECT_PATHS.items():
        curl = page.locator(f"#lang-{dialect}-curl pre").text_content()
        python = page.locator(f"#lang-{dialect}-python pre").text_content()
        assert f"curl -X POST {server.url}{path}" in curl and f'"{server.url}{path}"' in python
        compile(python, "<example>", "exec")
        body = json.loads(re.search(r"-d '(.*)'\s*$", curl, re.DOTALL).group(1))
        # The page's body (model_page.py) is the workbench's (dialects.js), from the same field table.
        assert body == page.evaluate(
            "async ([d, b]) => (await import('/static/js/dialects.js')).toDialect(d, b).body", [dialect, basic])
        headers = dict(re.findall(r'-H "([^:"]+): ([^"]*)"', curl))
        response = httpx.post(server.url + path, json=body, headers=headers, timeout=300)
        if response.status_code != 200:
            failures.append(f"{path}: {response.status_code} {response.text[:200]}")
    expect(page.locator("#lang-anthropic-curl pre")).to_contain_text('-H "x-api-key: $MISTRAL_SERVE_API_KEY"')
    assert not failures, failures


def test_the_model_page_without_javascript_and_for_an_unknown_model(browser, server):
    page = new_page(browser, java_script_enabled=False)
    try:
        page.goto(f"{server.url}/docs/models/{MODEL}")
        for panel in ("#example-minimal", "#example-basic", "#example-all", "#lang-all-python", "#dialect-ollama",
                      "#lang-anthropic-python"):
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
