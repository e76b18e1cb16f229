"""The model documentation page, rendered on the server from the model object.

It follows the hosted hub's model page: title and description, the model id, a metrics table, a
link to the workbench, example requests (Minimal, Basic parameters, All parameters) in cURL and
Python, the Basic request in the server's other API dialects (OpenAI Responses, Anthropic Messages,
Ollama), how to fetch the model object, and a table of the request parameters built from the
model's `json_request_schema`. Every value is HTML-escaped; the page works without JavaScript
(the tabs then show one after the other).
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any, Iterable
from urllib.parse import quote

from . import STATIC_DIR

CHAT_PATH = "/api/ai/chat/completions"
# The snippet lines, shared with the workbench's API tab (static/js/snippets.js fills the same ones).
TEMPLATES = json.loads((STATIC_DIR / "js" / "snippets.json").read_text(encoding="utf-8"))
EXAMPLE_PROMPT = TEMPLATES["example_prompt"]
KEY_ENV = TEMPLATES["key_env"]
DIALECTS: dict[str, dict] = TEMPLATES["dialects"]


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def doc_href(model_id: str) -> str:
    return "/docs/models/" + quote(model_id, safe="/")


# ---- example requests --------------------------------------------------------------------------

def example_bodies(model_id: str) -> list[tuple[str, str, dict]]:
    """(slug, title, body) of the three examples, the same bodies as the hub's model page."""
    minimal = {"model": model_id, "messages": [{"role": "user", "content": EXAMPLE_PROMPT}]}
    basic = {**minimal, "temperature": 0.7, "max_tokens": 1024, "stream": False}
    full = {**basic, "top_p": 1.0}
    return [("minimal", "Minimal", minimal), ("basic", "Basic parameters", basic), ("all", "All parameters", full)]


def py_literal(value: Any, indent: int = 0, step: int = 4) -> str:
    """A Python literal for a JSON value (True/False/None, not true/false/null)."""
    pad, inner = " " * indent, " " * (indent + step)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {py_literal(v, indent + step, step)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [f"{inner}{py_literal(v, indent + step, step)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if value is None:
        return "None"
    return json.dumps(value)


def _fill(lines: list[str], headers: list[str], **values: str) -> str:
    """The template's lines, a {{headers}} line replaced by `headers` and each {{name}} by its value
    (the key variable's name built in)."""
    values = {"key_env": KEY_ENV, **values}
    lines = [h for line in lines for h in (headers if line == "{{headers}}" else [line])]
    return "\n".join(re.sub(r"\{\{(\w+)\}\}", lambda m: values[m[1]], line) for line in lines)


def curl_snippet(url: str, body: dict, dialect: str = "chat") -> str:
    data = json.dumps(body, indent=2, ensure_ascii=False).replace("'", "'\\''")
    return _fill(TEMPLATES["curl"], DIALECTS[dialect]["curl_headers"], stream_flag="", url=url, data=f"'{data}'")


def python_snippet(url: str, body: dict, dialect: str = "chat") -> str:
    spec = DIALECTS[dialect]
    return _fill(TEMPLATES["requests"] + spec["requests_answer"], spec["requests_headers"],
                 url_literal=json.dumps(url), body=py_literal(body, 4))


def _set_path(out: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for name in parents:
        out = out.setdefault(name, {})
    out[last] = value


def example_in(dialect: str, body: dict) -> dict:
    """An example body (the model, user messages, sampling fields) in another dialect's form: the
    fields renamed by the dialect's table in snippets.json, as the workbench's dialects.js does for
    any request (which also maps system prompts, tools, formats and tool calls)."""
    if dialect == "chat":
        return body
    spec = DIALECTS[dialect]
    messages = body["messages"]
    if any(m["role"] != "user" for m in messages):
        raise ValueError("the examples hold user messages only")
    out: dict = {"model": body["model"]}
    if dialect == "anthropic":
        out["max_tokens"] = spec["default_max_tokens"]  # required there: first, overwritten when the body has one
    for name, value in body.items():
        if name == "model":
            continue
        if name == "messages":
            if dialect == "responses":
                out["input"] = messages[0]["content"] if len(messages) == 1 else messages
            else:
                out["messages"] = messages
        elif name in spec.get("fields", {}):
            _set_path(out, spec["fields"][name], value)
        else:
            raise ValueError(f"{name}: not a field of the examples")
    if dialect == "ollama":
        out.setdefault("stream", False)  # Ollama streams unless told not to
    return out


# ---- the request parameter table ---------------------------------------------------------------

def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _variants(node: dict) -> list[dict]:
    return node["anyOf"] if "anyOf" in node else [node]


def schema_type(node: dict) -> str:
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in node:
        return " | ".join(schema_type(v) for v in node["anyOf"])
    kind = node.get("type", "any")
    if kind == "array":
        return f"array of {schema_type(node.get('items', {}))}"
    return kind


def schema_range(node: dict) -> str:
    parts: list[str] = []
    for v in _variants(node):
        lo, hi = v.get("minimum"), v.get("maximum")
        xlo, xhi = v.get("exclusiveMinimum"), v.get("exclusiveMaximum")
        low = f"> {_num(xlo)}" if xlo is not None else f"≥ {_num(lo)}" if lo is not None else None
        high = f"< {_num(xhi)}" if xhi is not None else f"≤ {_num(hi)}" if hi is not None else None
        if lo is not None and hi is not None:
            parts.append(f"{_num(lo)} to {_num(hi)}")
        elif low and high:
            parts.append(f"{low} and {high}")
        elif low or high:
            parts.append(low or high)
        if "maxItems" in v:
            parts.append(f"up to {v['maxItems']} items")
        if v.get("minItems"):
            parts.append(f"at least {v['minItems']} item" + ("s" if v["minItems"] > 1 else ""))
        if "maxLength" in v:
            parts.append(f"up to {v['maxLength']} characters")
        if "enum" in v:
            parts.append("one of " + ", ".join(str(x) for x in v["enum"]))
        if "const" in v:
            parts.append(f"must be {v['const']}")
        for value in (v.get("patternProperties") or {}).values():
            if "minimum" in value and "maximum" in value:
                parts.append(f"values {_num(value['minimum'])} to {_num(value['maximum'])}")
    return "; ".join(parts)


def schema_rows(schema: dict) -> list[dict]:
    """One row per top-level request field, in the schema's `x-order`: name, type, range, default,
    description, required, and basic (named in the schema's `basic`: the workbench shows it by default)."""
    required = set(schema.get("required", []))
    basic = set(schema.get("basic", []))
    defs = schema.get("$defs", {})
    props = schema.get("properties", {})
    # Sorted is stable: a field without an x-order keeps its place, after those with one.
    ordered = sorted(props.items(), key=lambda kv: (not isinstance(kv[1].get("x-order"), int), kv[1].get("x-order", 0)))
    rows = []
    for name, node in ordered:
        description = node.get("description")
        if description is None:
            refs = [v["$ref"] for v in _variants(node) if "$ref" in v]
            if refs:
                description = defs.get(refs[0].rsplit("/", 1)[-1], {}).get("description")
        if name in required and "const" not in node:
            default = "required"
        elif "default" in node:
            default = json.dumps(node["default"])
        else:
            default = ""
        rows.append({"name": name, "type": schema_type(node), "range": schema_range(node),
                     "default": default, "description": description or "", "required": name in required,
                     "basic": name in basic})
    return rows


# ---- page pieces ---------------------------------------------------------------------------------

def layout(title: str, body: str, *, description: str = "") -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<meta name="description" content="{e(description)}">
<link rel="icon" href="/static/mistral-logo.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/docs.css">
<script type="module" src="/static/js/model-page.js"></script>
</head>
<body>
<header class="topbar">
  <a class="brand" href="/"><img src="/static/mistral-logo.svg" alt="" width="24" height="24"><span>mistral-serve</span></a>
  <nav aria-label="Site">
    <a href="/">Workbench</a>
    <a href="/docs/models">Models</a>
    <a href="/api/docs">API reference</a>
  </nav>
</header>
<main class="doc">
{body}
</main>
<footer class="foot">Served by mistral-serve, a self-hosted inference server.</footer>
</body>
</html>
"""


def _code_block(label: str, code: str, lang: str) -> str:
    return (f'<div class="code"><div class="code-head"><span>{e(label)}</span>'
            f'<button type="button" class="copy" data-copy hidden>Copy</button></div>'
            f'<pre><code class="lang-{e(lang)}">{e(code)}</code></pre></div>')


def _tabs(group: str, tabs: Iterable[tuple[str, str, str]], *, kind: str) -> str:
    """A tab set: (slug, title, panel html). Without JavaScript every panel shows, titled."""
    tabs = list(tabs)
    buttons = "".join(
        f'<button type="button" role="tab" id="{e(group)}-{e(slug)}-tab" aria-controls="{e(group)}-{e(slug)}" '
        f'aria-selected="{"true" if i == 0 else "false"}" tabindex="{0 if i == 0 else -1}">{e(title)}</button>'
        for i, (slug, title, _) in enumerate(tabs))
    panels = "".join(
        f'<section class="tab-panel" role="tabpanel" id="{e(group)}-{e(slug)}" aria-labelledby="{e(group)}-{e(slug)}-tab"'
        f'{" data-active" if i == 0 else ""}><h3 class="tab-title">{e(title)}</h3>{html}</section>'
        for i, (slug, title, html) in enumerate(tabs))
    return (f'<div class="tabs tabs-{e(kind)}" data-tabs><div class="tab-list" role="tablist" hidden>{buttons}</div>'
            f'{panels}</div>')


def _badge(row: dict) -> str:
    if row["required"]:
        return " <span class=req>required</span>"
    if row["basic"]:
        return ' <span class=basic title="Shown by default in the workbench">basic</span>'
    return ""


def _yes_no(value: Any) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return str(value)


def _quantization(value: Any) -> str:
    if value in (None, "", "none"):
        return "None (full precision)"
    return str(value)


def render_model_page(model: dict, base_url: str) -> str:
    mid = model["id"]
    name = model.get("display_name") or mid
    url = base_url.rstrip("/") + CHAT_PATH
    workbench = "/?model=" + quote(mid, safe="")
    context = model.get("context_length")
    metrics = [
        ("Parameter Count", model.get("parameter_count_label") or model.get("parameter_count", "Unknown")),
        ("Mixture of Experts", _yes_no(model.get("mixture_of_experts", "Unknown"))),
        ("Context Length", f"{context:,} tokens" if isinstance(context, int) else "Unknown"),
        ("Multilingual", _yes_no(model.get("multilingual", "Unknown"))),
        ("Quantization*", _quantization(model.get("quantization"))),
        ("Chat Template", model.get("chat_template") or "Unknown"),
        ("Developer", (model.get("developer") or {}).get("name") or "Unknown"),
    ]
    if model.get("license"):
        metrics.append(("License", model["license"]))
    metric_rows = "".join(f"<tr><th scope=\"row\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in metrics)

    examples = []
    for slug, title, body in example_bodies(mid):
        group = _tabs(f"lang-{slug}", [("curl", "cURL", _code_block("cURL", curl_snippet(url, body), "bash")),
                                       ("python", "Python", _code_block("Python", python_snippet(url, body), "python"))],
                      kind="code")
        examples.append((slug, title, group))

    # The Basic request in the other dialects the server speaks.
    basic = next(body for slug, _, body in example_bodies(mid) if slug == "basic")
    dialects = []
    for dialect, spec in DIALECTS.items():
        if dialect == "chat":
            continue
        other = example_in(dialect, basic)
        dialect_url = base_url.rstrip("/") + spec["path"]
        code = _tabs(f"lang-{dialect}", [
            ("curl", "cURL", _code_block("cURL", curl_snippet(dialect_url, other, dialect), "bash")),
            ("python", "Python", _code_block("Python", python_snippet(dialect_url, other, dialect), "python"))],
            kind="code")
        dialects.append((dialect, spec["title"], f'<p class="endpoint"><code>POST {e(spec["path"])}</code></p>{code}'))

    schema = model.get("json_request_schema") or {}
    param_rows = "".join(
        f'<tr id="param-{e(r["name"])}"><td><code>{e(r["name"])}</code>'
        f'{_badge(r)}</td>'
        f'<td><code class="type">{e(r["type"])}</code></td><td>{e(r["range"]) or "<span class=muted>—</span>"}</td>'
        f'<td>{("<code>" + e(r["default"]) + "</code>") if r["default"] and r["default"] != "required" else "<span class=muted>—</span>"}</td>'
        f'<td>{e(r["description"])}</td></tr>'
        for r in schema_rows(schema))

    demo = ""
    if model.get("demo"):
        demo = ('<div class="callout warn" role="note"><strong>Demo model: random weights.</strong> '
                'This server runs the built-in demo, a tiny Mistral-shaped model with the real tokenizer and '
                'random weights: its answers are random text. Start the server with <code>--model</code> to '
                'serve real Mistral 7B weights.</div>')

    models_curl = f'curl -H "Authorization: Bearer ${KEY_ENV}" {base_url.rstrip("/")}/api/ai/models/{mid}'
    body = f"""
<nav class="crumbs" aria-label="Breadcrumb"><a href="/docs/models">Models</a> <span aria-hidden="true">/</span> <span>{e(mid)}</span></nav>
<h1>{e(name)}</h1>
<p class="lead">{e(model.get("summary") or "")}</p>
{demo}
<a class="cta" href="{e(workbench)}">
  <span class="cta-icon" aria-hidden="true">⚗</span>
  <span><strong>Try it in the workbench</strong><br>
  <span class="muted">Run {e(name)} interactively, tune parameters, and compare outputs.</span></span>
  <span class="cta-arrow" aria-hidden="true">→</span>
</a>
<p class="model-id"><strong>Model ID:</strong> <code id="model-id">{e(mid)}</code></p>
<p>{e(model.get("description") or "")}</p>
<table class="metrics" id="metrics">
<thead><tr><th scope="col">Metric</th><th scope="col">Value</th></tr></thead>
<tbody>{metric_rows}</tbody>
</table>
<p class="footnote">*Quantization is specific to the inference provider; this server reports the weights it loaded.</p>

<h2 id="example-request">Example request</h2>
<div class="callout tip" role="note">Use the <a href="{e(workbench)}">Workbench</a> as a request builder:
configure parameters for this model in the UI, then open the <strong>API</strong> tab to copy the exact cURL
or Python call, as an OpenAI Chat Completions, OpenAI Responses, Anthropic Messages or Ollama request. Set <code>{KEY_ENV}</code> to your key (any value works while the server has no keys).</div>
{_tabs("example", examples, kind="examples")}

<h2 id="other-apis">Other APIs</h2>
<p>The server speaks more than one API: the <em>Basic parameters</em> request above in the form of
each. The workbench's API tab writes any request in any of them, and says what a dialect leaves out.</p>
{_tabs("dialect", dialects, kind="dialects")}

<h2 id="fetch-model-details">Fetch model details</h2>
<p>The models endpoint returns the full model object, including its <code>json_request_schema</code>.</p>
{_code_block("cURL", models_curl, "bash")}

<h2 id="request-parameters">Request parameters</h2>
<p>This model follows the standard OpenAI chat completions request body, on <code>{e(CHAT_PATH)}</code>
and on <code>/v1/chat/completions</code>. The table is generated from the model's
<code>json_request_schema</code>, in its <code>x-order</code>; the fields marked <em>basic</em> (its
<code>basic</code> list) are the ones the workbench shows by default. Unknown parameters are refused with a 400 naming them.</p>
<div class="table-scroll">
<table class="params" id="request-parameters-table">
<thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Range</th><th scope="col">Default</th><th scope="col">Description</th></tr></thead>
<tbody>{param_rows}</tbody>
</table>
</div>
"""
    return layout(f"{name} · mistral-serve", body, description=model.get("summary") or "")


def render_model_index(models: list[dict]) -> str:
    items = "".join(
        f'<li><a href="{e(doc_href(m["id"]))}"><strong>{e(m.get("display_name") or m["id"])}</strong></a> '
        f'<code>{e(m["id"])}</code><br><span class="muted">{e(m.get("summary") or "")}</span></li>'
        for m in models)
    body = f"""<h1>Models</h1>
<p class="lead">The models this server serves.</p>
<ul class="model-list">{items}</ul>"""
    return layout("Models · mistral-serve", body)


def render_not_found(model_id: str, models: list[dict]) -> str:
    items = "".join(f'<li><a href="{e(doc_href(m["id"]))}">{e(m.get("display_name") or m["id"])}</a> '
                    f'<code>{e(m["id"])}</code></li>' for m in models)
    known = f"<p>This server serves:</p><ul class=\"model-list\">{items}</ul>" if items else ""
    body = f"""<h1>Model not found</h1>
<p class="lead">There is no model <code>{e(model_id)}</code> on this server.</p>
{known}
<p><a href="/">Open the workbench</a></p>"""
    return layout("Model not found · mistral-serve", body)


def render_unavailable(message: str) -> str:
    body = f"""<h1>Model not available yet</h1>
<p class="lead">{e(message)}</p>
<p>This page reloads when you refresh it; the <a href="/health">health endpoint</a> turns 200 once the model is ready.</p>"""
    return layout("Model not available · mistral-serve", body)
