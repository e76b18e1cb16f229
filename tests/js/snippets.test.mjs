// The API tab's snippets (static/js/snippets.js), filled from the template the model page shares.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { CHAT_PATH } from "../../src/mistral_serve/workbench/static/js/api.js";
import { toDialect } from "../../src/mistral_serve/workbench/static/js/dialects.js";
import {
  KEY_ENV, anthropicSnippet, curlSnippet, ollamaSnippet, openaiResponsesSnippet, openaiSnippet, pyLiteral,
  requestsSnippet, snippets,
} from "../../src/mistral_serve/workbench/static/js/snippets.js";

const TEMPLATES = JSON.parse(readFileSync(new URL("../../src/mistral_serve/workbench/static/js/snippets.json", import.meta.url)));
const ORIGIN = "http://127.0.0.1:8000";
const URL_ = `${ORIGIN}/api/ai/chat/completions`;
const body = { model: "m", messages: [{ role: "user", content: "It's me" }], temperature: 0.5 };

describe("pyLiteral", () => {
  it("writes True, False and None, strings in double quotes, nested and indented", () => {
    assert.equal(pyLiteral({ a: true, b: [false, null, 1.5, "x\"y"], c: {}, d: [] }), [
      "{", '    "a": True,', '    "b": [', "        False,", "        None,", "        1.5,", '        "x\\"y"', "    ],",
      '    "c": {},', '    "d": []', "}"].join("\n"));
    assert.equal(pyLiteral({ a: 1 }, 4), '{\n        "a": 1\n    }');
    assert.equal(pyLiteral(Number.NaN), "None");
  });
});

describe("curlSnippet", () => {
  it("fills the shared template, quoting the body for the shell", () => {
    const code = curlSnippet(ORIGIN, body);
    const headers = TEMPLATES.dialects.chat.curl_headers;
    assert.equal(code.split("\n").length,
      TEMPLATES.curl.length - 1 + headers.length + JSON.stringify(body, null, 2).split("\n").length - 1);
    assert.equal(TEMPLATES.dialects.chat.path, CHAT_PATH);
    assert.ok(code.startsWith(`curl -X POST ${URL_} \\\n`));
    assert.ok(code.includes(`-H "Authorization: Bearer $${KEY_ENV}"`));
    assert.ok(code.includes(`"content": "It'\\''s me"`));
    assert.ok(!code.includes("{{"));
  });

  it("keeps the connection open for a stream", () => {
    assert.ok(curlSnippet(ORIGIN, { ...body, stream: true }).startsWith("curl -N -X POST"));
  });
});

describe("requestsSnippet", () => {
  it("is the shared template's request and answer lines without tools or stream", () => {
    const code = requestsSnippet(ORIGIN, body);
    const lines = code.split("\n");
    const answer = TEMPLATES.dialects.chat.requests_answer;
    assert.deepEqual(lines.slice(-answer.length), answer);
    assert.equal(lines[4], `    "${URL_}",`);
    assert.ok(code.includes(`os.environ.get('${KEY_ENV}', '')`));
    assert.ok(code.includes('    json={\n        "model": "m",'));
    assert.ok(!code.includes("{{"));
  });

  it("reads the events of a stream, and joins tool calls", () => {
    const tools = [{ type: "function", function: { name: "f" } }];
    const stream = requestsSnippet(ORIGIN, { ...body, stream: true, tools });
    assert.ok(stream.startsWith("import json\nimport os\nimport requests"));
    assert.ok(stream.includes("    stream=True,\n)"));
    assert.ok(stream.includes("calls = {}"));
    assert.ok(requestsSnippet(ORIGIN, { ...body, tools }).includes('message.get("tool_calls")'));
  });
});

describe("openaiSnippet", () => {
  it("puts the server's own parameters in extra_body", () => {
    const code = openaiSnippet(ORIGIN, { ...body, top_k: 3 });
    assert.ok(code.includes(`base_url="${ORIGIN}/v1"`));
    assert.ok(code.includes("    temperature=0.5,"));
    assert.ok(code.includes('    extra_body={\n        "top_k": 3\n    },  # mistral-serve extensions'));
  });
});

describe("snippets", () => {
  it("lists cURL, requests and openai", () => {
    assert.deepEqual(snippets(ORIGIN, body).map((s) => [s.id, s.lang]), [["curl", "bash"], ["python", "python"], ["openai", "python"]]);
  });

  it("lists cURL, requests and the dialect's own package for each dialect", () => {
    const sdk = (dialect) => snippets(ORIGIN, toDialect(dialect, body).body, dialect).map((s) => `${s.id}:${s.title}`);
    assert.deepEqual(sdk("responses"), ["curl:cURL", "python:Python (requests)", "openai:Python (openai)"]);
    assert.deepEqual(sdk("anthropic"), ["curl:cURL", "python:Python (requests)", "anthropic:Python (anthropic)"]);
    assert.deepEqual(sdk("ollama"), ["curl:cURL", "python:Python (requests)", "ollama:Python (ollama)"]);
  });
});

// ---- the other dialects' snippets ----------------------------------------------------------------

const TOOLS = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
const CHAT = {
  model: "m", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "It's me" }],
  temperature: 0.5, top_k: 3, max_tokens: 16,
};
const inDialect = (dialect, extra = {}) => toDialect(dialect, { ...CHAT, ...extra }).body;

describe("the Responses snippets", () => {
  it("post to /v1/responses with a bearer key and print the output_text parts", () => {
    const b = inDialect("responses");
    const curl = curlSnippet(ORIGIN, b, "responses");
    assert.ok(curl.startsWith(`curl -X POST ${ORIGIN}/v1/responses \\\n`));
    assert.ok(curl.includes(`-H "Authorization: Bearer $${KEY_ENV}"`));
    assert.ok(curl.includes('"instructions": "Be brief."') && curl.includes('"max_output_tokens": 16'));
    const python = requestsSnippet(ORIGIN, b, "responses");
    assert.deepEqual(python.split("\n").slice(-TEMPLATES.dialects.responses.requests_answer.length),
      TEMPLATES.dialects.responses.requests_answer);
    assert.ok(python.includes('item["type"] == "message"') && python.includes('part["type"] == "output_text"'));
    const sdk = openaiResponsesSnippet(ORIGIN, b);
    assert.ok(sdk.includes(`base_url="${ORIGIN}/v1"`) && sdk.includes("client.responses.create("));
    assert.ok(sdk.includes('    instructions="Be brief.",') && sdk.includes("    max_output_tokens=16,"));
    assert.ok(sdk.endsWith("print(response.output_text)"));
    assert.ok(/extra_body=\{\s*"top_k": 3\s*\}/.test(sdk), sdk); // an extension: in the body, not an argument
  });

  it("read the events of a stream, and print function calls", () => {
    const b = inDialect("responses", { stream: true, tools: TOOLS });
    const python = requestsSnippet(ORIGIN, b, "responses");
    assert.ok(python.includes('event["type"] == "response.output_text.delta"'));
    assert.ok(python.includes('event["item"]["type"] == "function_call"'));
    assert.ok(!python.includes("[DONE]"));
    assert.ok(requestsSnippet(ORIGIN, inDialect("responses", { tools: TOOLS }), "responses")
      .includes('    if item["type"] == "function_call":'));
    const sdk = openaiResponsesSnippet(ORIGIN, b);
    assert.ok(sdk.includes("stream = client.responses.create(") && sdk.includes('event.type == "response.output_text.delta"'));
  });
});

describe("the Anthropic snippets", () => {
  it("send x-api-key and anthropic-version and print the text blocks", () => {
    const b = inDialect("anthropic");
    const curl = curlSnippet(ORIGIN, b, "anthropic");
    assert.ok(curl.startsWith(`curl -X POST ${ORIGIN}/v1/messages \\\n`));
    assert.ok(curl.includes(`-H "x-api-key: $${KEY_ENV}"`) && curl.includes('-H "anthropic-version: 2023-06-01"'));
    assert.ok(curl.includes('-H "content-type: application/json"') && !curl.includes("Authorization"));
    const python = requestsSnippet(ORIGIN, b, "anthropic");
    assert.ok(python.includes(`"x-api-key": os.environ.get('${KEY_ENV}', ''),`));
    assert.ok(python.endsWith('print("".join(block["text"] for block in content if block["type"] == "text"))'));
  });

  it("give the SDK its arguments, and the sampling fields in extra_body", () => {
    const sdk = anthropicSnippet(ORIGIN, inDialect("anthropic", { stop: "END" }));
    assert.ok(sdk.includes(`anthropic.Anthropic(base_url="${ORIGIN}", api_key=`));
    assert.ok(sdk.includes("    max_tokens=16,") && sdk.includes('    system="Be brief.",'));
    assert.ok(sdk.includes('    stop_sequences=[\n        "END"\n    ],'));
    assert.ok(sdk.includes('    extra_body={\n        "temperature": 0.5,\n        "top_k": 3\n    },'));
    assert.ok(sdk.endsWith('print("".join(block.text for block in message.content if block.type == "text"))'));
  });

  it("join streamed tool input by block index", () => {
    const b = inDialect("anthropic", { stream: true, tools: TOOLS });
    const python = requestsSnippet(ORIGIN, b, "anthropic");
    assert.ok(python.includes('event["delta"]["type"] == "text_delta"') && python.includes("partial_json"));
    assert.ok(anthropicSnippet(ORIGIN, b).includes('event.delta.type == "input_json_delta"'));
    assert.ok(requestsSnippet(ORIGIN, inDialect("anthropic", { tools: TOOLS }), "anthropic").includes('block["type"] == "tool_use"'));
  });
});

describe("the Ollama snippets", () => {
  it("post to /api/chat with a bearer key and print message.content", () => {
    const b = inDialect("ollama");
    const curl = curlSnippet(ORIGIN, b, "ollama");
    assert.ok(curl.startsWith(`curl -X POST ${ORIGIN}/api/chat \\\n`));
    assert.ok(curl.includes(`-H "Authorization: Bearer $${KEY_ENV}"`) && curl.includes('"stream": false'));
    assert.ok(requestsSnippet(ORIGIN, b, "ollama").endsWith('print(response.json()["message"]["content"])'));
    const sdk = ollamaSnippet(ORIGIN, b);
    assert.ok(sdk.includes(`Client(host="${ORIGIN}",\n                headers={"Authorization": f"Bearer {os.environ.get('${KEY_ENV}', '')}"})`));
    assert.ok(sdk.includes("    options={\n") && sdk.includes("    stream=False,") && !sdk.includes("extra_body"));
    assert.ok(sdk.endsWith("print(response.message.content)"));
  });

  it("read a stream line by line until done", () => {
    const b = inDialect("ollama", { stream: true, tools: TOOLS });
    const python = requestsSnippet(ORIGIN, b, "ollama");
    assert.ok(python.includes("chunk = json.loads(line)") && python.includes('if chunk.get("done"):'));
    assert.ok(python.includes('chunk["message"].get("tool_calls")'));
    assert.ok(curlSnippet(ORIGIN, b, "ollama").startsWith("curl -N -X POST"));
    assert.ok(ollamaSnippet(ORIGIN, b).includes("for chunk in stream:"));
  });
});
