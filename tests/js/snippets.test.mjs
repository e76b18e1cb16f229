// The API tab's snippets (static/js/snippets.js), filled from the template the model page shares.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import {
  KEY_ENV, curlSnippet, openaiSnippet, pyLiteral, requestsSnippet, snippets,
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
    assert.equal(code.split("\n").length, TEMPLATES.curl.length + JSON.stringify(body, null, 2).split("\n").length - 1);
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
    assert.deepEqual(lines.slice(-TEMPLATES.requests_answer.length), TEMPLATES.requests_answer);
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
});
