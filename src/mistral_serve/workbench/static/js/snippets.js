// The API calls that reproduce the workbench's request: cURL, Python requests, Python openai.

import { CHAT_PATH } from "./api.js";

export const KEY_ENV = "MISTRAL_SERVE_API_KEY";

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

export function curlSnippet(origin, body) {
  const data = JSON.stringify(body, null, 2);
  return [
    `curl${body.stream ? " -N" : ""} -X POST ${origin}${CHAT_PATH} \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -H "Authorization: Bearer $${KEY_ENV}" \\`,
    `  -d ${shellQuote(data)}`,
  ].join("\n");
}

export function requestsSnippet(origin, body) {
  const head = [
    "import os",
    "import requests",
    "",
    "response = requests.post(",
    `    ${JSON.stringify(origin + CHAT_PATH)},`,
    "    headers={",
    `        "Content-Type": "application/json",`,
    `        "Authorization": f"Bearer {os.environ.get('${KEY_ENV}', '')}",`,
    "    },",
    `    json=${pyLiteral(body, 4)},`,
  ];
  if (body.stream) {
    return [
      "import json", ...head,
      "    stream=True,",
      ")",
      "response.raise_for_status()",
      "for line in response.iter_lines(decode_unicode=True):",
      "    if not line.startswith(\"data: \") or line == \"data: [DONE]\":",
      "        continue",
      "    chunk = json.loads(line[len(\"data: \"):])",
      "    for choice in chunk.get(\"choices\", []):",
      "        print(choice[\"delta\"].get(\"content\") or \"\", end=\"\", flush=True)",
      "print()",
    ].join("\n");
  }
  return [...head, ")", "response.raise_for_status()",
    "print(response.json()[\"choices\"][0][\"message\"][\"content\"])"].join("\n");
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
  if (body.stream) {
    lines.push("for chunk in stream:",
      "    if chunk.choices:",
      "        print(chunk.choices[0].delta.content or \"\", end=\"\", flush=True)",
      "print()");
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
