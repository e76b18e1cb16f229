// Building the conversation into requests: pure functions over plain data, no page and no state.
//
// A conversation is {system, turns}: each turn is {id, user, answers: {paneId: answer}}, and an
// answer whose tool calls got results has .next, the answer that goes on after them (a chain).

import { wireCall } from "./toolcalls.js";

/** A new, streaming answer of `model` with id `id`, started at `tStart` (a performance.now() time). */
export function newAnswer(id, model, tStart) {
  return {
    id, text: "", toolCalls: [], results: null, drafts: [], next: null,
    status: "streaming", finish: null, usage: null, chunks: 0, error: null, edited: false,
    model, tStart, tFirst: 0, tEnd: 0, view: null,
  };
}

/** A copy of an answer chain for another pane, without its view. */
export function cloneAnswer(answer) {
  if (!answer) return null;
  return {
    ...answer, view: null, toolCalls: answer.toolCalls.map((c) => ({ ...c })),
    results: answer.results && [...answer.results], drafts: [...answer.drafts], next: cloneAnswer(answer.next),
  };
}

/** The answer `answer` follows in its pane's chain (the one whose tool results it answers), or null. */
export function parentOf(turn, paneId, answer) {
  for (let a = turn.answers[paneId]; a; a = a.next) if (a.next === answer) return a;
  return null;
}

/** The last answer of a chain. */
export function leafOf(answer) {
  let a = answer;
  while (a && a.next) a = a.next;
  return a;
}

/** Two user (or two plain assistant) messages in a row become one; tool calls and results never merge. */
export function mergeRoles(messages) {
  const plain = (m) => typeof m.content === "string" && !m.tool_calls && (m.role === "user" || m.role === "assistant");
  const out = [];
  for (const m of messages) {
    const prev = out[out.length - 1];
    if (prev && prev.role === m.role && plain(prev) && plain(m)) prev.content = `${prev.content}\n\n${m.content}`;
    else out.push({ ...m });
  }
  return out;
}

/**
 * The messages of one pane's answer chain, up to and with `through` (the whole chain without it):
 * an answer with calls and their results is the assistant message with tool_calls (the server takes
 * content or tool_calls, not both) and one tool message per call; calls left without results drop out.
 */
export function chainMessages(answer, through = null) {
  const out = [];
  for (let a = answer; a; a = a.next) {
    if (a.toolCalls.length && a.results) {
      out.push({ role: "assistant", content: null, tool_calls: a.toolCalls.map(wireCall) });
      a.toolCalls.forEach((call, i) => out.push({ role: "tool", tool_call_id: call.id, content: a.results[i] }));
    } else if (a.text) {
      out.push({ role: "assistant", content: a.text });
    }
    if (a === through) break;
  }
  return out;
}

/** The messages of pane `paneId` for the turns before `upto`, then the user message `user`, then (to
 * go on after tool results) that turn's answers up to and with `through`. */
export function buildMessages({ system, turns }, paneId, upto, user, through = null) {
  const messages = [];
  if (system.trim()) messages.push({ role: "system", content: system });
  for (const turn of turns.slice(0, upto)) {
    messages.push({ role: "user", content: turn.user });
    messages.push(...chainMessages(turn.answers[paneId]));
  }
  messages.push({ role: "user", content: user });
  if (through) messages.push(...chainMessages(turns[upto].answers[paneId], through));
  return mergeRoles(messages);
}

/** The request body: the model, the messages, the changed parameters and the output format and tool
 * fields, with the streaming fields unless `stream` is false. */
export function requestBody(model, messages, { params = {}, structured = {}, stream = true } = {}) {
  const body = { model, messages, ...params, ...structured };
  if (stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return body;
}

/**
 * The messages the API tab shows for pane `paneId`, and a note saying what they are: the
 * conversation and the draft when there is a draft; else the request behind the last answer (with
 * its tool results: `afterResults`); else `example` as the only user message.
 */
export function apiMessages(conversation, paneId, draft, example) {
  const { turns } = conversation;
  if (draft.trim()) {
    return {
      messages: buildMessages(conversation, paneId, turns.length, draft), afterResults: false,
      note: turns.length ? "Messages: the conversation so far and your draft." : "Messages: your draft.",
    };
  }
  if (turns.length) {
    const turn = turns[turns.length - 1];
    const parent = parentOf(turn, paneId, leafOf(turn.answers[paneId]));
    return {
      messages: buildMessages(conversation, paneId, turns.length - 1, turn.user, parent), afterResults: Boolean(parent),
      note: parent ? "Messages: the request behind the last answer, with the tool results."
        : "Messages: the request behind the last answer.",
    };
  }
  return {
    messages: buildMessages(conversation, paneId, 0, example), afterResults: false,
    note: "Messages: an example; type a message in the Chat tab to use yours.",
  };
}
