// The workbench's conversation building (static/js/conversation.js): node --test tests/js/

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  apiMessages, buildMessages, chainMessages, cloneAnswer, leafOf, mergeRoles, newAnswer, parentOf, requestBody,
} from "../../src/mistral_serve/workbench/static/js/conversation.js";

const CALL = { id: "call1", type: "function", name: "get_weather", arguments: "{\"city\": \"Paris\"}" };
const WIRE = { id: "call1", type: "function", function: { name: "get_weather", arguments: "{\"city\": \"Paris\"}" } };

function answer(fields = {}) {
  return { ...newAnswer(fields.id ?? 1, "m", 0), status: "done", ...fields };
}

/** A turn whose pane 1 called a tool, got its result and answered; pane 2 answered in text. */
function toolTurn() {
  const after = answer({ id: 3, text: "It is sunny." });
  const calls = answer({ id: 2, toolCalls: [{ ...CALL }], results: ["sunny"], next: after });
  return { turn: { id: 10, user: "Weather?", answers: { 1: calls, 2: answer({ id: 4, text: "No idea." }) } }, calls, after };
}

describe("newAnswer and cloneAnswer", () => {
  it("starts an empty, streaming answer", () => {
    const a = newAnswer(7, "model-x", 12.5);
    assert.equal(a.id, 7);
    assert.equal(a.model, "model-x");
    assert.equal(a.tStart, 12.5);
    assert.equal(a.status, "streaming");
    assert.deepEqual([a.text, a.toolCalls, a.results, a.next, a.view], ["", [], null, null, null]);
  });

  it("copies a whole chain, without its views and sharing no arrays", () => {
    const { calls } = toolTurn();
    calls.view = { root: "element" };
    calls.drafts = ["sunny"];
    const copy = cloneAnswer(calls);
    assert.equal(copy.view, null);
    assert.deepEqual(copy.toolCalls, calls.toolCalls);
    assert.notEqual(copy.toolCalls[0], calls.toolCalls[0]);
    assert.notEqual(copy.results, calls.results);
    assert.notEqual(copy.drafts, calls.drafts);
    assert.equal(copy.next.text, "It is sunny.");
    assert.notEqual(copy.next, calls.next);
    assert.equal(cloneAnswer(null), null);
  });
});

describe("parentOf and leafOf", () => {
  it("find an answer's place in its pane's chain", () => {
    const { turn, calls, after } = toolTurn();
    assert.equal(parentOf(turn, 1, after), calls);
    assert.equal(parentOf(turn, 1, calls), null);
    assert.equal(parentOf(turn, 2, after), null);
    assert.equal(leafOf(calls), after);
    assert.equal(leafOf(after), after);
    assert.equal(leafOf(undefined), undefined);
  });
});

describe("mergeRoles", () => {
  it("joins two plain messages of the same role", () => {
    assert.deepEqual(mergeRoles([{ role: "user", content: "a" }, { role: "user", content: "b" },
      { role: "assistant", content: "c" }, { role: "assistant", content: "d" }]),
    [{ role: "user", content: "a\n\nb" }, { role: "assistant", content: "c\n\nd" }]);
  });

  it("never merges tool calls or tool results, and leaves its input alone", () => {
    const input = [{ role: "assistant", content: null, tool_calls: [WIRE] }, { role: "assistant", content: "x" },
      { role: "tool", tool_call_id: "a", content: "1" }, { role: "tool", tool_call_id: "b", content: "2" }];
    const copy = structuredClone(input);
    assert.deepEqual(mergeRoles(input), input);
    assert.deepEqual(input, copy);
    const users = [{ role: "user", content: "a" }, { role: "user", content: "b" }];
    mergeRoles(users);
    assert.equal(users[0].content, "a");
  });
});

describe("chainMessages", () => {
  it("sends calls with results as tool_calls and one tool message per call", () => {
    const { calls } = toolTurn();
    assert.deepEqual(chainMessages(calls), [
      { role: "assistant", content: null, tool_calls: [WIRE] },
      { role: "tool", tool_call_id: "call1", content: "sunny" },
      { role: "assistant", content: "It is sunny." },
    ]);
  });

  it("stops at `through`, and drops calls without results and empty answers", () => {
    const { calls } = toolTurn();
    assert.equal(chainMessages(calls, calls).length, 2);
    assert.deepEqual(chainMessages(answer({ text: "", toolCalls: [CALL] })), []);
    assert.deepEqual(chainMessages(answer({ text: "Hm.", toolCalls: [CALL] })), [{ role: "assistant", content: "Hm." }]);
    assert.deepEqual(chainMessages(null), []);
  });
});

describe("buildMessages", () => {
  const first = { id: 1, user: "Hello", answers: { 1: answer({ text: "Hi!" }) } };

  it("puts the system prompt first, then each turn of the pane, then the new message", () => {
    const conversation = { system: "Be brief.", turns: [first] };
    assert.deepEqual(buildMessages(conversation, 1, 1, "And you?"), [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hello" },
      { role: "assistant", content: "Hi!" },
      { role: "user", content: "And you?" },
    ]);
  });

  it("leaves out a blank system prompt and the turns from `upto` on", () => {
    const conversation = { system: "  \n", turns: [first, { id: 2, user: "Later", answers: {} }] };
    assert.deepEqual(buildMessages(conversation, 1, 0, "Again"), [{ role: "user", content: "Again" }]);
  });

  it("merges a user message left without an answer (stopped, failed, or another pane's)", () => {
    const conversation = { system: "", turns: [{ id: 1, user: "Hello", answers: {} }] };
    assert.deepEqual(buildMessages(conversation, 1, 1, "Still there?"), [{ role: "user", content: "Hello\n\nStill there?" }]);
  });

  it("goes on after tool results with the turn's chain up to them", () => {
    const { turn, calls } = toolTurn();
    const conversation = { system: "", turns: [turn] };
    assert.deepEqual(buildMessages(conversation, 1, 0, turn.user, calls), [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: null, tool_calls: [WIRE] },
      { role: "tool", tool_call_id: "call1", content: "sunny" },
    ]);
    // Each pane has its own conversation.
    assert.deepEqual(buildMessages(conversation, 2, 1, "Thanks"), [
      { role: "user", content: "Weather?" }, { role: "assistant", content: "No idea." }, { role: "user", content: "Thanks" },
    ]);
  });
});

describe("requestBody", () => {
  const messages = [{ role: "user", content: "Hi" }];

  it("streams with usage by default", () => {
    assert.deepEqual(requestBody("m", messages), {
      model: "m", messages, stream: true, stream_options: { include_usage: true },
    });
  });

  it("adds the changed parameters and the output format and tool fields, in that order", () => {
    const body = requestBody("m", messages, {
      params: { temperature: 0.5, max_tokens: 16 }, structured: { response_format: { type: "json_object" } }, stream: false,
    });
    assert.deepEqual(Object.keys(body), ["model", "messages", "temperature", "max_tokens", "response_format"]);
    assert.equal(body.temperature, 0.5);
    assert.equal("stream" in body, false);
  });
});

describe("apiMessages", () => {
  const example = "Hello, what can you do?";

  it("shows an example before anything is typed", () => {
    const got = apiMessages({ system: "", turns: [] }, 1, "", example);
    assert.deepEqual(got.messages, [{ role: "user", content: example }]);
    assert.equal(got.afterResults, false);
    assert.match(got.note, /an example/);
  });

  it("shows the draft, after the conversation so far", () => {
    const turns = [{ id: 1, user: "Hello", answers: { 1: answer({ text: "Hi!" }) } }];
    assert.equal(apiMessages({ system: "", turns: [] }, 1, "Draft", example).note, "Messages: your draft.");
    const got = apiMessages({ system: "", turns }, 1, "Draft", example);
    assert.deepEqual(got.messages.map((m) => m.content), ["Hello", "Hi!", "Draft"]);
    assert.equal(got.note, "Messages: the conversation so far and your draft.");
  });

  it("shows the request behind the last answer when the draft is blank", () => {
    const turns = [{ id: 1, user: "Hello", answers: { 1: answer({ text: "Hi!" }) } }];
    const got = apiMessages({ system: "", turns }, 1, "  ", example);
    assert.deepEqual(got.messages, [{ role: "user", content: "Hello" }]);
    assert.equal(got.note, "Messages: the request behind the last answer.");
  });

  it("after tool results, shows the request that sent them", () => {
    const { turn } = toolTurn();
    const got = apiMessages({ system: "", turns: [turn] }, 1, "", example);
    assert.deepEqual(got.messages.map((m) => m.role), ["user", "assistant", "tool"]);
    assert.equal(got.afterResults, true);
    assert.equal(got.note, "Messages: the request behind the last answer, with the tool results.");
  });
});
