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
    set_param(page, "seed", 7)  # opens the Advanced group (support/workbench.py)
    params.locator('[data-param="stop"] textarea').fill("END")
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


def test_the_schemas_basic_fields_show_and_the_rest_wait_under_advanced_in_x_order(page, server):
    """The hub's workbench keys: `basic` fields show by default, the others sit in a closed
    Advanced group; each group in `x-order` order. Read from the served schema, so a change of
    the table in server/models.py moves the controls with it."""
    schema = httpx.get(server.url + "/api/ai/models/open-mistral-7b").json()["json_request_schema"]
    props = schema["properties"]
    by_order = sorted(props, key=lambda name: props[name]["x-order"])
    open_workbench(page, server)
    params = page.locator(".params")
    basic_group, advanced = params.locator("fieldset.param-group.basic"), params.locator("details.advanced")
    shown = basic_group.locator("[data-param]").evaluate_all("els => els.map((e) => e.dataset.param)")
    hidden = advanced.locator("[data-param]").evaluate_all("els => els.map((e) => e.dataset.param)")
    assert shown == [n for n in by_order if n in schema["basic"] and n in shown] == ["temperature", "max_tokens"]
    assert hidden == [n for n in by_order if n not in schema["basic"] and n in hidden]
    assert {"top_p", "seed", "stop", "presence_penalty", "logit_bias"} <= set(hidden)
    assert hidden.index("top_p") == 0  # the hub's "All parameters" field comes first
    expect(basic_group.locator("legend")).to_have_text("Basic")
    expect(params.locator('[data-param="temperature"] input[type=range]')).to_be_visible()
    expect(params.locator('[data-param="top_p"] input[type=range]')).to_be_hidden()
    expect(advanced).not_to_have_attribute("open", "")
    advanced.locator("summary").click()
    expect(params.locator('[data-param="top_p"] input[type=range]')).to_be_visible()
    # Open stays open when the panel is drawn again (Reset all)...
    set_param(page, "top_p", 0.5)
    page.get_by_role("button", name="Reset all").click()
    expect(params.locator("details.advanced")).to_have_attribute("open", "")
    # ...and a set advanced value never hides: closed, the group opens again in a new pane (Compare
    # copies the values), while a closed group without one stays closed.
    set_param(page, "top_p", 0.5)
    params.locator("details.advanced summary").click()
    expect(params.locator('[data-param="top_p"] input[type=range]')).to_be_hidden()
    page.locator("#compare-btn").click()
    second = page.locator(".pane").nth(1)
    expect(second.locator("details.advanced")).to_have_attribute("open", "")
    expect(second.locator('[data-param="top_p"] input[type=number]')).to_have_value("0.5")


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
