// The messages of a pane: the user's turns, the answers with their numbers, tool calls and results,
// the editors, and the empty state. Model output only ever reaches the page as text nodes.

import { $, copyText, errorBox, formatInt, h, toast } from "./dom.js";
import { EXAMPLE_PROMPT } from "./snippets.js";
import { letter, modelById, render, state } from "./store.js";
import { regenerate, runTurn, structuredReady, submitResults } from "./chat.js";
import { toolCallCard, toolResultsForm, toolResultsView } from "./toolcalls.js";

const SUGGESTIONS = [EXAMPLE_PROMPT, "Write a haiku about the sea.", "Explain a KV cache in two sentences."];

/** The messages view: the pane's conversation, drawn anew and scrolled to the end. */
export function renderMessages(pane) {
  const list = pane.refs.messages;
  if (!list) return;
  list.replaceChildren();
  if (!state.turns.length) {
    list.append(emptyState(pane));
    return;
  }
  state.turns.forEach((turn, index) => {
    list.append(userView(turn, index, pane));
    for (let answer = turn.answers[pane.id]; answer; answer = answer.next) {
      list.append(answerView(answer, turn, index, pane));
      if (answer.results) list.append(toolResultsView(answer.toolCalls, answer.results));
    }
  });
  pane.stick = true;
  scrollDown(pane);
}

/** The answer view: one answer redrawn where it stands, kept in sight while it streams. */
export function paintAnswer(answer, turn, pane) {
  updateAnswer(answer, turn, pane);
  scrollDown(pane);
}

function emptyState(pane) {
  const first = pane === state.panes[0];
  const model = modelById(pane.modelId);
  return h("div", { class: "empty" },
    first ? h("img", { src: "/static/mistral-logo.svg", alt: "", width: 44, height: 44 }) : null,
    h("h2", {}, first ? `Chat with ${model.display_name || model.id}` : `Pane ${letter(pane)}`),
    h("p", {}, first
      ? "Answers stream in as they are generated. Tune the parameters, compare settings side by side, then copy the exact API call from the API tab."
      : "Answers the same conversation with its own parameters. Change them with the Parameters button."),
    first ? h("div", { class: "suggestions" }, SUGGESTIONS.map((text) => h("button", {
      type: "button", class: "suggestion", onclick: () => { const p = $("#prompt"); p.value = text; p.focus(); render(); },
    }, text))) : null);
}

function actionButton(label, onclick, extra = {}) {
  return h("button", { type: "button", class: "msg-action", onclick, ...extra }, label);
}

function userView(turn, index, pane) {
  const editing = state.editing && state.editing.turnId === turn.id && state.editing.paneId === pane.id && state.editing.role === "user";
  const root = h("article", { class: "msg user", dataset: { turn: String(index) } },
    h("div", { class: "msg-role" }, "You"));
  if (editing) {
    root.append(editor(turn.user, "Save & send", (text) => {
      if (!structuredReady()) return;
      state.editing = null;
      turn.user = text;
      state.turns.splice(index + 1);
      runTurn(index);
    }));
    return root;
  }
  root.append(h("div", { class: "msg-text" }, turn.user),
    h("div", { class: "msg-actions" },
      actionButton("Edit", () => startEdit(turn, pane, "user"), { disabled: state.running > 0, title: "Edit this message and ask again" }),
      actionButton("Copy", async () => toast((await copyText(turn.user)) ? "Copied" : "Copy failed"))));
  return root;
}

function answerView(answer, turn, index, pane) {
  const last = index === state.turns.length - 1 && !answer.next;
  const editing = state.editing && state.editing.answer === answer;
  const root = h("article", { class: "msg assistant", dataset: { turn: String(index), status: answer.status } });
  root.append(h("div", { class: "msg-role" }, "Assistant",
    state.models.length > 1 ? h("span", { class: "msg-model" }, answer.model) : null,
    answer.edited ? h("span", { class: "msg-tag" }, "edited") : null));
  if (editing) {
    root.append(editor(answer.text, "Save", (text) => {
      state.editing = null;
      answer.text = text;
      answer.edited = true;
      render({ messages: pane });
    }));
    answer.view = null;
    return root;
  }
  const textNode = document.createTextNode(answer.text);
  const text = h("div", { class: "msg-text" }, textNode, h("span", { class: "cursor", "aria-hidden": "true" }));
  const calls = h("div", { class: "tool-calls", "aria-label": "Tool calls" });
  const error = h("div", { class: "msg-error" });
  const stats = h("div", { class: "stats", "aria-label": "Answer statistics" });
  const actions = h("div", { class: "msg-actions" });
  const form = h("div", { class: "tool-form-slot" });
  root.append(text, calls, error, h("div", { class: "msg-foot" }, stats, actions), form);
  answer.view = { root, textNode, calls, error, stats, actions, form, formShown: false, pane, last };
  updateAnswer(answer, turn, pane);
  return root;
}

function updateAnswer(answer, turn, pane) {
  const view = answer.view;
  if (!view) return;
  view.root.dataset.status = answer.status;
  view.root.classList.toggle("no-text", !answer.text);
  view.root.classList.toggle("has-calls", answer.toolCalls.length > 0);
  const streaming = answer.status === "streaming";
  view.calls.replaceChildren(...answer.toolCalls.map((call) => toolCallCard(call, streaming)));
  view.error.replaceChildren(...(answer.error ? [errorBox(answer.error)] : []));
  if (!view.formShown && !streaming && answer.toolCalls.length && !answer.results) {
    view.formShown = true;
    view.form.replaceChildren(view.last
      ? toolResultsForm(answer.toolCalls, answer.drafts, {
        idPrefix: `result-${pane.id}-${answer.id}`, disabled: state.running > 0,
        onSubmit: (results) => submitResults(pane, turn, answer, results),
      })
      : h("p", { class: "hint tool-skipped" }, "No results were sent for these calls; the conversation goes on without them."));
  }
  view.stats.replaceChildren(...statsParts(answer).map(([key, label, title]) =>
    h("span", { class: `stat stat-${key}`, dataset: { stat: key }, title }, label)));
  const actions = [];
  if (answer.status === "streaming") {
    actions.push(actionButton("Stop", () => pane.controller?.abort()));
  } else if (turn) {
    if (answer.text) actions.push(actionButton("Copy", async () => toast((await copyText(answer.text)) ? "Copied" : "Copy failed")));
    if (answer.text) actions.push(actionButton("Edit", () => startEdit(turn, pane, "assistant", answer), { disabled: state.running > 0 }));
    if (view.last) actions.push(actionButton("Regenerate", () => regenerate(pane, turn, answer), { disabled: state.running > 0 }));
  }
  view.actions.replaceChildren(...actions);
}

function ms(value) {
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

/** [key, label, tooltip] for the answer's numbers. */
function statsParts(a) {
  const parts = [];
  const usage = a.usage;
  const out = usage ? usage.completion_tokens : a.chunks;
  if (usage) parts.push(["in", `${formatInt(usage.prompt_tokens)} in`, "Prompt tokens"]);
  if (a.status !== "error" || out) {
    parts.push(["out", `${usage ? "" : "≈"}${formatInt(out)} out`, usage ? "Completion tokens" : "Completion tokens (counted from the stream)"]);
  }
  if (a.tFirst) parts.push(["ttft", `TTFT ${ms(a.tFirst - a.tStart)}`, "Time to first token"]);
  const end = a.tEnd || performance.now();
  // Calls come whole at the end (the server holds them back until they parse): no rate to show then.
  const callsOnly = a.toolCalls.length > 0 && !a.text;
  if (a.tFirst && out > 1 && end - a.tFirst > 0 && !callsOnly) {
    const tps = (out - 1) / ((end - a.tFirst) / 1000);
    parts.push(["tps", `${tps >= 100 ? Math.round(tps) : tps.toFixed(1)} tok/s`, "Output tokens per second after the first token"]);
  }
  if (a.status === "streaming") parts.push(["finish", "streaming…", "Generating"]);
  else if (a.status === "stopped") parts.push(["finish", "stopped", "Stopped before the end"]);
  else if (a.finish) {
    const why = a.finish === "length" ? "Stopped at max_tokens (or the context end)"
      : a.finish === "tool_calls" ? "The model called tools" : "The model ended the answer, or a stop string was met";
    parts.push(["finish", `finish: ${a.finish}`, why]);
  }
  return parts;
}

function editor(initial, saveLabel, onSave) {
  const area = h("textarea", { class: "textarea edit-area", rows: 3, "aria-label": "Edit message" });
  area.value = initial;
  const save = () => { if (area.value.trim()) onSave(area.value); };
  const cancel = () => { state.editing = null; render({ messages: true }); };
  area.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); save(); }
    if (ev.key === "Escape") { ev.preventDefault(); ev.stopPropagation(); cancel(); }
  });
  return h("div", { class: "editor" }, area, h("div", { class: "editor-actions" },
    h("button", { type: "button", class: "btn primary small", onclick: save }, saveLabel),
    h("button", { type: "button", class: "btn ghost small", onclick: cancel }, "Cancel")));
}

function startEdit(turn, pane, role, answer = null) {
  if (state.running) return;
  state.editing = { turnId: turn.id, paneId: pane.id, role, answer };
  render({ messages: true });
  const area = pane.refs.messages.querySelector(".edit-area");
  if (area) {
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  }
}

function scrollDown(pane) {
  const list = pane.refs.messages;
  if (list && pane.stick) list.scrollTop = list.scrollHeight;
}
