"""The workbench's parameter controls, generated from the request schema, and its API tab: only
changed values are sent, bad values block sending, and the curl command it shows works as is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from support.workbench import open_workbench, route_answers, send, set_param  # noqa: E402


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
