// The API calls that reproduce the workbench's request, in each dialect the server speaks: cURL,
// Python requests and the dialect's own Python package (openai, anthropic, ollama). The cURL and
// requests lines and each dialect's path and headers come from snippets.json, which the model page
// (model_page.py) fills too.

import { DIALECTS } from "./dialects.js";
import TEMPLATES from "./snippets.json" with { type: "json" };

export const KEY_ENV = TEMPLATES.key_env;
export const EXAMPLE_PROMPT = TEMPLATES.example_prompt;

// Parameters the openai client takes as keyword arguments; the others go in extra_body.
const OPENAI_ARGS = new Set(["model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "n",
  "stop", "stream", "stream_options", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
  "seed", "user", "response_format", "tools", "tool_choice", "parallel_tool_calls"]);

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

/** The template's lines, a {{headers}} line replaced by `headers`, and each {{name}} by values[name]
 * (the key variable's name built in). */
function fill(lines, values, headers = []) {
  const all = { key_env: KEY_ENV, ...values };
  return lines.flatMap((line) => (line === "{{headers}}" ? headers : [line]))
    .map((line) => line.replace(/\{\{(\w+)\}\}/g, (_, name) => all[name]));
}

/** The dialect's URL on `origin`. */
export function dialectUrl(origin, dialect = "chat") {
  return origin + DIALECTS[dialect].path;
}

export function curlSnippet(origin, body, dialect = "chat") {
  return fill(TEMPLATES.curl, {
    stream_flag: body.stream ? " -N" : "", url: dialectUrl(origin, dialect), data: shellQuote(JSON.stringify(body, null, 2)),
  }, DIALECTS[dialect].curl_headers).join("\n");
}

const hasTools = (body) => Array.isArray(body.tools) && body.tools.length > 0;

/** The request lines of the requests snippet (up to the json= argument). */
function requestsHead(origin, body, dialect) {
  return fill(TEMPLATES.requests, { url_literal: JSON.stringify(dialectUrl(origin, dialect)), body: pyLiteral(body, 4) },
    DIALECTS[dialect].requests_headers);
}

/** A stream of server-sent events read with requests (no [DONE] line in these dialects): `handle`
 * is the loop body for `event`. */
function sseLoop(handle) {
  return [
    "for line in response.iter_lines(decode_unicode=True):",
    "    if not line.startswith(\"data: \"):",
    "        continue",
    "    event = json.loads(line[len(\"data: \"):])",
    ...handle,
  ];
}

function requestsChat(head, body) {
  const tools = hasTools(body);
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
    ];
  }
  if (tools) {
    return [...head, ")", "response.raise_for_status()",
      "message = response.json()[\"choices\"][0][\"message\"]",
      "for call in message.get(\"tool_calls\") or []:",
      "    print(\"tool call:\", call[\"id\"], call[\"function\"][\"name\"], call[\"function\"][\"arguments\"])",
      "if message[\"content\"] is not None:",
      "    print(message[\"content\"])"];
  }
  return [...head, ...DIALECTS.chat.requests_answer];
}

function requestsResponses(head, body) {
  const tools = hasTools(body);
  if (body.stream) {
    return [
      "import json", ...head,
      "    stream=True,",
      ")",
      "response.raise_for_status()",
      ...(tools ? ["calls = []"] : []),
      ...sseLoop([
        "    if event[\"type\"] == \"response.output_text.delta\":",
        "        print(event[\"delta\"], end=\"\", flush=True)",
        ...(tools ? [
          "    elif event[\"type\"] == \"response.output_item.done\" and event[\"item\"][\"type\"] == \"function_call\":",
          "        calls.append(event[\"item\"])",
        ] : []),
      ]),
      "print()",
      ...(tools ? [
        "for call in calls:",
        "    print(\"tool call:\", call[\"call_id\"], call[\"name\"], call[\"arguments\"])",
      ] : []),
    ];
  }
  const answer = DIALECTS.responses.requests_answer;
  if (tools) {
    // The answer's lines, with the calls printed between reading the output and its text.
    const read = answer.findIndex((line) => line.startsWith("output = "));
    return [...head, ...answer.slice(0, read + 1),
      "for item in output:",
      "    if item[\"type\"] == \"function_call\":",
      "        print(\"tool call:\", item[\"call_id\"], item[\"name\"], item[\"arguments\"])",
      ...answer.slice(read + 1)];
  }
  return [...head, ...answer];
}

function requestsAnthropic(head, body) {
  const tools = hasTools(body);
  if (body.stream) {
    return [
      "import json", ...head,
      "    stream=True,",
      ")",
      "response.raise_for_status()",
      ...(tools ? ["calls = {}  # tool inputs arrive in pieces: join them by block index"] : []),
      ...sseLoop([
        "    if event[\"type\"] == \"content_block_delta\" and event[\"delta\"][\"type\"] == \"text_delta\":",
        "        print(event[\"delta\"][\"text\"], end=\"\", flush=True)",
        ...(tools ? [
          "    elif event[\"type\"] == \"content_block_start\" and event[\"content_block\"][\"type\"] == \"tool_use\":",
          "        block = event[\"content_block\"]",
          "        calls[event[\"index\"]] = {\"id\": block[\"id\"], \"name\": block[\"name\"], \"input\": \"\"}",
          "    elif event[\"type\"] == \"content_block_delta\" and event[\"delta\"][\"type\"] == \"input_json_delta\":",
          "        calls[event[\"index\"]][\"input\"] += event[\"delta\"][\"partial_json\"]",
        ] : []),
      ]),
      "print()",
      ...(tools ? [
        "for call in calls.values():",
        "    print(\"tool call:\", call[\"id\"], call[\"name\"], call[\"input\"])",
      ] : []),
    ];
  }
  const answer = DIALECTS.anthropic.requests_answer;
  if (tools) {
    const read = answer.findIndex((line) => line.startsWith("content = "));
    return ["import json", ...head, ...answer.slice(0, read + 1),
      "for block in content:",
      "    if block[\"type\"] == \"tool_use\":",
      "        print(\"tool call:\", block[\"id\"], block[\"name\"], json.dumps(block[\"input\"]))",
      ...answer.slice(read + 1)];
  }
  return [...head, ...answer];
}

function requestsOllama(head, body) {
  const tools = hasTools(body);
  const printCalls = (message, indent) => [
    `${indent}for call in ${message}.get("tool_calls") or []:`,
    `${indent}    print("tool call:", call["function"]["name"], json.dumps(call["function"]["arguments"]))`,
  ];
  if (body.stream) {
    return [
      "import json", ...head,
      "    stream=True,",
      ")",
      "response.raise_for_status()",
      "# One JSON object a line; the last has done: true.",
      "for line in response.iter_lines(decode_unicode=True):",
      "    if not line:",
      "        continue",
      "    chunk = json.loads(line)",
      "    print(chunk[\"message\"][\"content\"], end=\"\", flush=True)",
      ...(tools ? printCalls("chunk[\"message\"]", "    ") : []),
      "    if chunk.get(\"done\"):",
      "        break",
      "print()",
    ];
  }
  if (tools) {
    return ["import json", ...head, ")", "response.raise_for_status()",
      "message = response.json()[\"message\"]",
      ...printCalls("message", ""),
      "print(message[\"content\"])"];
  }
  return [...head, ...DIALECTS.ollama.requests_answer];
}

const REQUESTS = { chat: requestsChat, responses: requestsResponses, anthropic: requestsAnthropic, ollama: requestsOllama };

export function requestsSnippet(origin, body, dialect = "chat") {
  return REQUESTS[dialect](requestsHead(origin, body, dialect), body).join("\n");
}

/** `name=value,` lines of an SDK call: the names the SDK takes as arguments (all of them without
 * `takes`), the others in extra_body. */
function sdkArguments(body, takes = null, extraComment = "") {
  const lines = [];
  const extra = {};
  for (const [name, value] of Object.entries(body)) {
    if (!takes || takes.has(name)) lines.push(`    ${name}=${pyLiteral(value, 4)},`);
    else extra[name] = value;
  }
  if (Object.keys(extra).length) lines.push(`    extra_body=${pyLiteral(extra, 4)},  # ${extraComment}`);
  return lines;
}

export function openaiSnippet(origin, body) {
  const lines = [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(origin + "/v1")}, api_key=os.environ.get("${KEY_ENV}", "none"))`,
    "",
    `${body.stream ? "stream" : "completion"} = client.chat.completions.create(`,
    ...sdkArguments(body, OPENAI_ARGS, "mistral-serve extensions"),
    ")",
  ];
  const tools = hasTools(body);
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

// The arguments of client.responses.create that a Responses body can hold.
const RESPONSES_ARGS = new Set(["model", "input", "instructions", "temperature", "top_p", "max_output_tokens", "text",
  "tools", "tool_choice", "parallel_tool_calls", "user", "stream", "top_logprobs"]);

/** The openai package's Responses call (client.responses.create). */
export function openaiResponsesSnippet(origin, body) {
  const lines = [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(origin + "/v1")}, api_key=os.environ.get("${KEY_ENV}", "none"))`,
    "",
    `${body.stream ? "stream" : "response"} = client.responses.create(`,
    ...sdkArguments(body, RESPONSES_ARGS, "mistral-serve extensions"),
    ")",
  ];
  const tools = hasTools(body);
  if (body.stream) {
    lines.push(...(tools ? ["calls = []"] : []),
      "for event in stream:",
      "    if event.type == \"response.output_text.delta\":",
      "        print(event.delta, end=\"\", flush=True)",
      ...(tools ? [
        "    elif event.type == \"response.output_item.done\" and event.item.type == \"function_call\":",
        "        calls.append(event.item)",
      ] : []),
      "print()",
      ...(tools ? ["for call in calls:", "    print(\"tool call:\", call.call_id, call.name, call.arguments)"] : []));
  } else {
    if (tools) {
      lines.push("for item in response.output:",
        "    if item.type == \"function_call\":",
        "        print(\"tool call:\", item.call_id, item.name, item.arguments)");
    }
    lines.push("print(response.output_text)");
  }
  return lines.join("\n");
}

// The arguments of the anthropic package's messages.create (2.x has no sampling arguments: those
// go in the body, through extra_body).
const ANTHROPIC_ARGS = new Set(["model", "max_tokens", "system", "messages", "stop_sequences", "tools", "tool_choice",
  "metadata", "stream"]);

/** The anthropic package's call (client.messages.create). */
export function anthropicSnippet(origin, body) {
  const tools = hasTools(body);
  const lines = [
    ...(tools ? ["import json"] : []),
    "import os",
    "import anthropic",
    "",
    `client = anthropic.Anthropic(base_url=${JSON.stringify(origin)}, api_key=os.environ.get("${KEY_ENV}", "none"))`,
    "",
    `${body.stream ? "stream" : "message"} = client.messages.create(`,
    ...sdkArguments(body, ANTHROPIC_ARGS, "sampling fields, sent in the body"),
    ")",
  ];
  if (body.stream) {
    lines.push(...(tools ? ["calls = {}  # tool inputs arrive in pieces: join them by block index"] : []),
      "for event in stream:",
      "    if event.type == \"content_block_delta\" and event.delta.type == \"text_delta\":",
      "        print(event.delta.text, end=\"\", flush=True)",
      ...(tools ? [
        "    elif event.type == \"content_block_start\" and event.content_block.type == \"tool_use\":",
        "        calls[event.index] = {\"id\": event.content_block.id, \"name\": event.content_block.name, \"input\": \"\"}",
        "    elif event.type == \"content_block_delta\" and event.delta.type == \"input_json_delta\":",
        "        calls[event.index][\"input\"] += event.delta.partial_json",
      ] : []),
      "print()",
      ...(tools ? [
        "for call in calls.values():",
        "    print(\"tool call:\", call[\"id\"], call[\"name\"], call[\"input\"])",
      ] : []));
  } else {
    if (tools) {
      lines.push("for block in message.content:",
        "    if block.type == \"tool_use\":",
        "        print(\"tool call:\", block.id, block.name, json.dumps(block.input))");
    }
    lines.push("print(\"\".join(block.text for block in message.content if block.type == \"text\"))");
  }
  return lines.join("\n");
}

/** The ollama package's call (Client.chat), with the key as a bearer token. */
export function ollamaSnippet(origin, body) {
  const tools = hasTools(body);
  const lines = [
    ...(tools ? ["import json"] : []),
    "import os",
    "from ollama import Client",
    "",
    `client = Client(host=${JSON.stringify(origin)},`,
    `                headers={"Authorization": f"Bearer {os.environ.get('${KEY_ENV}', '')}"})`,
    "",
    `${body.stream ? "stream" : "response"} = client.chat(`,
    ...sdkArguments(body), // an Ollama body's fields are all arguments of Client.chat
    ")",
  ];
  const calls = (message, indent) => [
    `${indent}for call in ${message}.tool_calls or []:`,
    `${indent}    print("tool call:", call.function.name, json.dumps(call.function.arguments))`,
  ];
  if (body.stream) {
    lines.push("for chunk in stream:",
      "    print(chunk.message.content or \"\", end=\"\", flush=True)",
      ...(tools ? calls("chunk.message", "    ") : []),
      "print()");
  } else {
    lines.push(...(tools ? calls("response.message", "") : []), "print(response.message.content)");
  }
  return lines.join("\n");
}

const SDK = {
  chat: { id: "openai", title: "Python (openai)", code: openaiSnippet },
  responses: { id: "openai", title: "Python (openai)", code: openaiResponsesSnippet },
  anthropic: { id: "anthropic", title: "Python (anthropic)", code: anthropicSnippet },
  ollama: { id: "ollama", title: "Python (ollama)", code: ollamaSnippet },
};

/** The snippets of `body`, a body of `dialect` (dialects.js makes one from the chat body). */
export function snippets(origin, body, dialect = "chat") {
  const sdk = SDK[dialect];
  return [
    { id: "curl", title: "cURL", lang: "bash", code: curlSnippet(origin, body, dialect) },
    { id: "python", title: "Python (requests)", lang: "python", code: requestsSnippet(origin, body, dialect) },
    { id: sdk.id, title: sdk.title, lang: "python", code: sdk.code(origin, body) },
  ];
}
