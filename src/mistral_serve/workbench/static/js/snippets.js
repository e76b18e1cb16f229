// The API calls that reproduce the workbench's request: cURL, Python requests, Python openai.
// The cURL and requests lines come from snippets.json, which the model page (model_page.py) fills too.

import { CHAT_PATH } from "./api.js";
import TEMPLATES from "./snippets.json" with { type: "json" };

export const KEY_ENV = TEMPLATES.key_env;
export const EXAMPLE_PROMPT = TEMPLATES.example_prompt;

// Parameters the openai client takes as keyword arguments; the others go in extra_body.
const OPENAI_ARGS = new Set(["temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "stop", "stream",
  "stream_options", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "seed",
  "user", "response_format", "tools", "tool_choice", "parallel_tool_calls"]);

/** A Python literal for a JSON value: True/False/None, strings in double quotes. */
export function pyLiteral(value, indent = 0, step = 4) {
  const pad = " ".repeat(indent);
  const inner = " ".repeat(indent + step);
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => inner + pyLiteral(v, indent + step, step)).join(",\n")}\n${pad}]`;
  }
  if (typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length) return "{}";
    return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${pyLiteral(v, indent + step, step)}`).join(",\n")}\n${pad}}`;
  }
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "None";
  return JSON.stringify(value);
}

function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

/** The template's lines with each {{name}} replaced by values[name] (the key variable's name built in). */
function fill(lines, values) {
  const all = { key_env: KEY_ENV, ...values };
  return lines.map((line) => line.replace(/\{\{(\w+)\}\}/g, (_, name) => all[name]));
}

export function curlSnippet(origin, body) {
  return fill(TEMPLATES.curl, {
    stream_flag: body.stream ? " -N" : "", url: origin + CHAT_PATH, data: shellQuote(JSON.stringify(body, null, 2)),
  }).join("\n");
}

export function requestsSnippet(origin, body) {
  const head = fill(TEMPLATES.requests, { url_literal: JSON.stringify(origin + CHAT_PATH), body: pyLiteral(body, 4) });
  const tools = Array.isArray(body.tools) && body.tools.length > 0;
  if (body.stream) {
    return [
      "import json", ...head,
      "    stream=True,",
      ")",
      "response.raise_for_status()",
      ...(tools ? ["calls = {}  # tool calls arrive in pieces: join them by index"] : []),
      "for line in response.iter_lines(decode_unicode=True):",
      "    if not line.startswith(\"data: \") or line == \"data: [DONE]\":",
      "        continue",
      "    chunk = json.loads(line[len(\"data: \"):])",
      "    for choice in chunk.get(\"choices\", []):",
      "        print(choice[\"delta\"].get(\"content\") or \"\", end=\"\", flush=True)",
      ...(tools ? [
        "        for call in choice[\"delta\"].get(\"tool_calls\") or []:",
        "            joined = calls.setdefault(call[\"index\"], {\"name\": \"\", \"arguments\": \"\"})",
        "            function = call.get(\"function\") or {}",
        "            joined[\"name\"] += function.get(\"name\") or \"\"",
        "            joined[\"arguments\"] += function.get(\"arguments\") or \"\"",
      ] : []),
      "print()",
      ...(tools ? [
        "for call in calls.values():",
        "    print(\"tool call:\", call[\"name\"], call[\"arguments\"])",
      ] : []),
    ].join("\n");
  }
  if (tools) {
    return [...head, ")", "response.raise_for_status()",
      "message = response.json()[\"choices\"][0][\"message\"]",
      "for call in message.get(\"tool_calls\") or []:",
      "    print(\"tool call:\", call[\"id\"], call[\"function\"][\"name\"], call[\"function\"][\"arguments\"])",
      "if message[\"content\"] is not None:",
      "    print(message[\"content\"])"].join("\n");
  }
  return [...head, ...TEMPLATES.requests_answer].join("\n");
}

export function openaiSnippet(origin, body) {
  const lines = [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(origin + "/v1")}, api_key=os.environ.get("${KEY_ENV}", "none"))`,
    "",
    `${body.stream ? "stream" : "completion"} = client.chat.completions.create(`,
  ];
  const extra = {};
  for (const [name, value] of Object.entries(body)) {
    if (name === "model" || name === "messages" || OPENAI_ARGS.has(name)) {
      lines.push(`    ${name}=${pyLiteral(value, 4)},`);
    } else {
      extra[name] = value;
    }
  }
  if (Object.keys(extra).length) lines.push(`    extra_body=${pyLiteral(extra, 4)},  # mistral-serve extensions`);
  lines.push(")");
  const tools = Array.isArray(body.tools) && body.tools.length > 0;
  if (body.stream && tools) {
    lines.push("calls = {}  # tool calls arrive in pieces: join them by index",
      "for chunk in stream:",
      "    if not chunk.choices:",
      "        continue",
      "    delta = chunk.choices[0].delta",
      "    print(delta.content or \"\", end=\"\", flush=True)",
      "    for call in delta.tool_calls or []:",
      "        joined = calls.setdefault(call.index, {\"name\": \"\", \"arguments\": \"\"})",
      "        if call.function:",
      "            joined[\"name\"] += call.function.name or \"\"",
      "            joined[\"arguments\"] += call.function.arguments or \"\"",
      "print()",
      "for call in calls.values():",
      "    print(\"tool call:\", call[\"name\"], call[\"arguments\"])");
  } else if (body.stream) {
    lines.push("for chunk in stream:",
      "    if chunk.choices:",
      "        print(chunk.choices[0].delta.content or \"\", end=\"\", flush=True)",
      "print()");
  } else if (tools) {
    lines.push("message = completion.choices[0].message",
      "for call in message.tool_calls or []:",
      "    print(\"tool call:\", call.id, call.function.name, call.function.arguments)",
      "if message.content is not None:",
      "    print(message.content)");
  } else {
    lines.push("print(completion.choices[0].message.content)");
  }
  return lines.join("\n");
}

export function snippets(origin, body) {
  return [
    { id: "curl", title: "cURL", lang: "bash", code: curlSnippet(origin, body) },
    { id: "python", title: "Python (requests)", lang: "python", code: requestsSnippet(origin, body) },
    { id: "openai", title: "Python (openai)", lang: "python", code: openaiSnippet(origin, body) },
  ];
}
