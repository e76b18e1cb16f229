// The API tab's dialects (static/js/dialects.js): the workbench's chat body in each API's form, and
// the note of what a dialect's call leaves out. node --test tests/js/

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  DEFAULT_DIALECT, DIALECTS, DIALECT_IDS, anthropicBody, chatBody, dialectId, leftOutNote, ollamaBody, responsesBody,
  toDialect,
} from "../../src/mistral_serve/workbench/static/js/dialects.js";
import { requestBody } from "../../src/mistral_serve/workbench/static/js/conversation.js";

const SYSTEM = { role: "system", content: "Answer in one word." };
const USER = { role: "user", content: "Hi" };
const TOOLS = [{
  type: "function",
  function: { name: "get_weather", description: "The weather in a city.", parameters: { type: "object", properties: { city: { type: "string" } } } },
}];
const SCHEMA = { type: "object", properties: { name: { type: "string" } }, required: ["name"] };
const JSON_SCHEMA = { type: "json_schema", json_schema: { name: "person", schema: SCHEMA, strict: true } };

/** A multi-turn conversation with a tool call and its result, as the workbench sends it. */
const TOOL_TURNS = [
  SYSTEM,
  { role: "user", content: "Weather in Paris?" },
  { role: "assistant", content: null, tool_calls: [{ id: "aB3dE5gH7", type: "function", function: { name: "get_weather", arguments: "{\"city\": \"Paris\"}" } }] },
  { role: "tool", tool_call_id: "aB3dE5gH7", content: "sunny" },
  { role: "assistant", content: "Sunny." },
  { role: "user", content: "Thanks" },
];

/** The chat body the API tab builds (requestBody without streaming fields, as api-tab.js asks). */
function chat(messages, params = {}, structured = {}, stream = false) {
  const body = requestBody("open-mistral-7b", messages, { params, structured, stream: false });
  if (stream) body.stream = true;
  return body;
}

describe("the dialect list", () => {
  it("offers the four dialects, chat first, with their paths", () => {
    assert.deepEqual(DIALECT_IDS, ["chat", "responses", "anthropic", "ollama"]);
    assert.deepEqual(DIALECT_IDS.map((id) => DIALECTS[id].path),
      ["/api/ai/chat/completions", "/v1/responses", "/v1/messages", "/api/chat"]);
    assert.equal(DIALECTS.chat.also, "/v1/chat/completions");
    assert.equal(DEFAULT_DIALECT, "chat");
  });

  it("falls back to chat for an unknown or stored-but-gone id", () => {
    assert.equal(dialectId("anthropic"), "anthropic");
    for (const id of ["", "nope", "__proto__", "toString", undefined]) assert.equal(dialectId(id), "chat");
    assert.deepEqual(toDialect("nope", chat([USER])).body, chat([USER]));
  });
});

describe("OpenAI Chat Completions", () => {
  it("is the workbench's body as it is, leaving nothing out", () => {
    const body = chat(TOOL_TURNS, { seed: 7, logit_bias: { 2: -100 }, top_k: 3 }, { tools: TOOLS }, true);
    assert.deepEqual(chatBody(body), { body, leftOut: [], adjusted: [] });
    assert.equal(leftOutNote("chat", chatBody(body)), "");
  });
});

describe("OpenAI Responses", () => {
  it("sends a single user turn as the input string, the system prompt as instructions", () => {
    assert.deepEqual(responsesBody(chat([USER])).body, { model: "open-mistral-7b", input: "Hi" });
    assert.deepEqual(responsesBody(chat([SYSTEM, USER], { temperature: 0.3, top_p: 0.9, max_tokens: 20 })).body, {
      model: "open-mistral-7b", instructions: "Answer in one word.", input: "Hi",
      temperature: 0.3, top_p: 0.9, max_output_tokens: 20,
    });
  });

  it("turns tool calls and results into function_call items, in a list of input items", () => {
    const { body } = responsesBody(chat(TOOL_TURNS));
    assert.equal(body.instructions, "Answer in one word.");
    assert.deepEqual(body.input, [
      { role: "user", content: "Weather in Paris?" },
      { type: "function_call", call_id: "aB3dE5gH7", name: "get_weather", arguments: "{\"city\": \"Paris\"}" },
      { type: "function_call_output", call_id: "aB3dE5gH7", output: "sunny" },
      { role: "assistant", content: "Sunny." },
      { role: "user", content: "Thanks" },
    ]);
  });

  it("flattens the function tools, maps tool_choice and parallel_tool_calls", () => {
    const structured = { tools: TOOLS, tool_choice: { type: "function", function: { name: "get_weather" } }, parallel_tool_calls: false };
    const { body, leftOut } = responsesBody(chat([USER], {}, structured));
    assert.deepEqual(body.tools, [{
      type: "function", name: "get_weather", description: "The weather in a city.",
      parameters: TOOLS[0].function.parameters, strict: false,
    }]);
    assert.deepEqual(body.tool_choice, { type: "function", name: "get_weather" });
    assert.equal(body.parallel_tool_calls, false);
    assert.deepEqual(leftOut, []);
    assert.equal(responsesBody(chat([USER], {}, { tools: TOOLS, tool_choice: "required" })).body.tool_choice, "required");
  });

  it("puts the output format in text.format", () => {
    assert.deepEqual(responsesBody(chat([USER], {}, { response_format: JSON_SCHEMA })).body.text,
      { format: { type: "json_schema", name: "person", schema: SCHEMA, strict: true } });
    assert.deepEqual(responsesBody(chat([USER], {}, { response_format: { type: "json_object" } })).body.text,
      { format: { type: "json_object" } });
  });

  it("streams when asked, and carries the server's extensions (seed, stop, top_k, penalties)", () => {
    const result = responsesBody(chat([USER], { seed: 7, stop: "END", top_k: 3, presence_penalty: 0.5, user: "u1",
                                                logit_bias: { "5": 1 } }, {}, true));
    assert.equal(result.body.stream, true);
    assert.equal(result.body.user, "u1");
    assert.ok(!("stream" in responsesBody(chat([USER])).body));
    for (const [name, value] of [["seed", 7], ["stop", "END"], ["top_k", 3], ["presence_penalty", 0.5]]) {
      assert.deepEqual(result.body[name], value, name);
    }
    assert.deepEqual(result.leftOut, ["logit_bias"]);
    assert.match(leftOutNote("responses", result), /^Left out: logit_bias\. OpenAI Responses has no field for/);
  });
});

describe("Anthropic Messages", () => {
  it("always sends max_tokens: the settings' value, or the default with a note", () => {
    const unset = anthropicBody(chat([USER]));
    assert.deepEqual(unset.body, { model: "open-mistral-7b", max_tokens: 1024, messages: [USER] });
    assert.equal(DIALECTS.anthropic.default_max_tokens, 1024);
    assert.match(leftOutNote("anthropic", unset), /max_tokens is required here: 1024/);
    const set = anthropicBody(chat([USER], { max_tokens: 16 }));
    assert.equal(set.body.max_tokens, 16);
    assert.equal(Object.keys(set.body)[1], "max_tokens");
    assert.equal(leftOutNote("anthropic", set), "");
  });

  it("takes the system prompt apart, maps sampling, stop and the user, and streams when asked", () => {
    const { body, leftOut } = anthropicBody(chat([SYSTEM, USER],
      { temperature: 0.4, top_p: 0.8, top_k: 5, max_tokens: 8, stop: "END", user: "u1" }, {}, true));
    assert.deepEqual(body, {
      model: "open-mistral-7b", max_tokens: 8, system: "Answer in one word.", messages: [USER],
      temperature: 0.4, top_p: 0.8, top_k: 5, stop_sequences: ["END"], metadata: { user_id: "u1" }, stream: true,
    });
    assert.deepEqual(leftOut, []);
    assert.deepEqual(anthropicBody(chat([USER], { stop: ["a", "b"] })).body.stop_sequences, ["a", "b"]);
  });

  it("caps the temperature at 1 and says so; top_k off is left at Anthropic's default", () => {
    const result = anthropicBody(chat([USER], { temperature: 1.6, top_k: -1, max_tokens: 4 }));
    assert.equal(result.body.temperature, 1);
    assert.ok(!("top_k" in result.body));
    assert.equal(leftOutNote("anthropic", result), "temperature 1.6 goes as 1, Anthropic's maximum.");
  });

  it("turns tool calls into tool_use blocks and results into tool_result blocks of a user turn", () => {
    const { body } = anthropicBody(chat(TOOL_TURNS, { max_tokens: 8 }));
    assert.equal(body.system, "Answer in one word.");
    assert.deepEqual(body.messages, [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: [{ type: "tool_use", id: "aB3dE5gH7", name: "get_weather", input: { city: "Paris" } }] },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "aB3dE5gH7", content: "sunny" }] },
      { role: "assistant", content: "Sunny." },
      { role: "user", content: "Thanks" },
    ]);
    // Results followed at once by a user message: one user turn, the results first.
    const merged = anthropicBody(chat([...TOOL_TURNS.slice(0, 4), { role: "user", content: "And Rome?" }])).body.messages;
    assert.deepEqual(merged[2], { role: "user", content: [
      { type: "tool_result", tool_use_id: "aB3dE5gH7", content: "sunny" }, { type: "text", text: "And Rome?" }] });
  });

  it("gives tools an input_schema and maps every tool_choice, parallel calls included", () => {
    const body = (structured) => anthropicBody(chat([USER], {}, { tools: TOOLS, ...structured })).body;
    assert.deepEqual(body({}).tools, [{ name: "get_weather", description: "The weather in a city.", input_schema: TOOLS[0].function.parameters }]);
    assert.ok(!("tool_choice" in body({})));
    assert.deepEqual(body({ tool_choice: "required" }).tool_choice, { type: "any" });
    assert.deepEqual(body({ tool_choice: "none" }).tool_choice, { type: "none" });
    assert.deepEqual(body({ tool_choice: { type: "function", function: { name: "get_weather" } } }).tool_choice,
      { type: "tool", name: "get_weather" });
    assert.deepEqual(body({ parallel_tool_calls: false }).tool_choice, { type: "auto", disable_parallel_tool_use: true });
    assert.deepEqual(body({ tool_choice: "required", parallel_tool_calls: false }).tool_choice,
      { type: "any", disable_parallel_tool_use: true });
    const bare = anthropicBody(chat([USER], {}, { tools: [{ type: "function", function: { name: "now" } }] })).body;
    assert.deepEqual(bare.tools, [{ name: "now", input_schema: { type: "object", properties: {} } }]);
  });

  it("leaves out seed, the penalties, logit_bias, n and the output format, and says so", () => {
    const result = anthropicBody(chat([USER], {
      max_tokens: 4, seed: 7, presence_penalty: 0.5, frequency_penalty: 0.1, repetition_penalty: 1.2, min_p: 0.1,
      logit_bias: { 2: -100 }, n: 2,
    }, { response_format: JSON_SCHEMA }));
    assert.deepEqual(result.leftOut, ["seed", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_p",
      "logit_bias", "n", "response_format"]);
    for (const name of result.leftOut) assert.ok(!(name in result.body), name);
    assert.equal(leftOutNote("anthropic", result), "Left out: seed, presence_penalty, frequency_penalty, "
      + "repetition_penalty, min_p, logit_bias, n and response_format. Anthropic Messages has no field for them, "
      + "so this call's answers can differ from the workbench's.");
  });
});

describe("Ollama", () => {
  it("keeps the system prompt as a message and always says whether to stream", () => {
    assert.deepEqual(ollamaBody(chat([SYSTEM, USER])).body,
      { model: "open-mistral-7b", messages: [SYSTEM, USER], stream: false });
    assert.equal(ollamaBody(chat([USER], {}, {}, true)).body.stream, true);
  });

  it("puts the sampling settings in options, under Ollama's names", () => {
    const { body, leftOut } = ollamaBody(chat([USER], {
      temperature: 0.2, top_p: 0.9, top_k: 40, min_p: 0.05, seed: 7, max_tokens: 32, stop: "END",
      presence_penalty: 0.5, frequency_penalty: 0.25, repetition_penalty: 1.1,
    }));
    assert.deepEqual(body.options, {
      temperature: 0.2, top_p: 0.9, top_k: 40, min_p: 0.05, seed: 7, num_predict: 32, stop: ["END"],
      presence_penalty: 0.5, frequency_penalty: 0.25, repeat_penalty: 1.1,
    });
    assert.deepEqual(leftOut, []);
    assert.ok(!("options" in ollamaBody(chat([USER])).body));
  });

  it("takes format json or the schema itself", () => {
    assert.equal(ollamaBody(chat([USER], {}, { response_format: { type: "json_object" } })).body.format, "json");
    assert.deepEqual(ollamaBody(chat([USER], {}, { response_format: JSON_SCHEMA })).body.format, SCHEMA);
  });

  it("sends OpenAI-shaped tools, calls with object arguments and results named by their tool", () => {
    const { body, leftOut } = ollamaBody(chat(TOOL_TURNS, {}, { tools: TOOLS }));
    assert.deepEqual(body.tools, TOOLS);
    assert.deepEqual(body.messages.slice(2, 4), [
      { role: "assistant", content: "", tool_calls: [{ function: { name: "get_weather", arguments: { city: "Paris" } } }] },
      { role: "tool", content: "sunny", tool_name: "get_weather" },
    ]);
    assert.deepEqual(leftOut, []);
  });

  it("leaves out a forced tool choice, parallel calls off, logit_bias and the server's extensions", () => {
    const result = ollamaBody(chat([USER], { logit_bias: { 2: -100 }, min_tokens: 3, user: "u1" },
      { tools: TOOLS, tool_choice: "required", parallel_tool_calls: false }));
    assert.deepEqual(result.leftOut, ["logit_bias", "min_tokens", "user", "tool_choice", "parallel_tool_calls"]);
    assert.match(leftOutNote("ollama", result), /^Left out: logit_bias, min_tokens, user, tool_choice and parallel_tool_calls\. Ollama has no field/);
    assert.deepEqual(ollamaBody(chat([USER], {}, { tools: TOOLS, tool_choice: "auto" })).leftOut, []);
  });
});

describe("leftOutNote", () => {
  it("is empty when nothing is left out, names one field alone", () => {
    assert.equal(leftOutNote("ollama", { leftOut: [], adjusted: [] }), "");
    assert.equal(leftOutNote("responses", { leftOut: ["seed"], adjusted: [] }),
      "Left out: seed. OpenAI Responses has no field for it, so this call's answers can differ from the workbench's.");
  });

  it("says what a call's arguments became when they were not a JSON object", () => {
    const turns = [USER, { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "[1]" } }] },
      { role: "tool", tool_call_id: "c1", content: "ok" }];
    for (const convert of [anthropicBody, ollamaBody]) {
      const result = convert(chat(turns, { max_tokens: 4 }));
      assert.match(result.adjusted.join(" "), /The arguments of the call c1 are not a JSON object: they go as \{\}\./);
    }
  });
});
