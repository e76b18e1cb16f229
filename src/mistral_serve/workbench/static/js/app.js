// The workbench: model picker and card, conversation panes (one, or several to compare settings),
// streamed answers with their numbers, generated parameter controls, output format and tools
// (shared by the panes), tool calls and their results, and the API tab.
// Model output only ever reaches the page as text nodes.

import { $, $$, copyText, formatInt, h, toast } from "./dom.js";
import { asReadable, fetchModels, streamChat } from "./api.js";
import { changedParams, formatValue, paramSpecs, renderParams } from "./params.js";
import { snippets } from "./snippets.js";
import { initStructured, structuredChips, structuredFields, structuredProblem } from "./structured.js";
import { addToolCallDeltas, toolCallCard, toolResultsForm, toolResultsView, wireCall } from "./toolcalls.js";

const KEY_STORAGE = "mistral-serve.apiKey";
const SYSTEM_STORAGE = "mistral-serve.systemPrompt";
const MAX_PANES = 4;
const LETTERS = "ABCD";
const FALLBACK_MODEL = "open-mistral-7b";
const EXAMPLE_PROMPT = "Hello, what can you do?";
const SUGGESTIONS = [EXAMPLE_PROMPT, "Write a haiku about the sea.", "Explain a KV cache in two sentences."];

const storage = {
  get(key) { try { return localStorage.getItem(key) || ""; } catch { return ""; } },
  set(key, value) { try { if (value) localStorage.setItem(key, value); else localStorage.removeItem(key); } catch { /* private mode */ } },
};

const state = {
  models: [],
  modelsError: null,
  modelsLoaded: false,
  key: storage.get(KEY_STORAGE),
  system: storage.get(SYSTEM_STORAGE),
  wantedModel: new URLSearchParams(location.search).get("model"),
  turns: [], // {id, user, answers: {paneId: answer}}; an answer with tool calls and results has .next
  panes: [], // {id, modelId, values, errors, controller, paramsOpen, stick, refs}
  running: 0,
  editing: null, // {turnId, paneId, role, answer}
  view: "chat",
};
let nextId = 1;
const specCache = new Map();

// ---- models ------------------------------------------------------------------------------------

function modelById(id) {
  return state.models.find((m) => m.id === id) || { id, json_request_schema: null };
}

function specsFor(pane) {
  const model = modelById(pane.modelId);
  const key = `${model.id}:${state.models.indexOf(model)}`;
  if (!specCache.has(key)) specCache.set(key, paramSpecs(model.json_request_schema, model));
  return specCache.get(key);
}

function docsHref(id) {
  return `/docs/models/${id.split("/").map(encodeURIComponent).join("/")}`;
}

let modelsRequest = null;
let modelsRetry = 0;
async function loadModels() {
  clearTimeout(modelsRetry);
  modelsRequest?.abort();
  const controller = new AbortController();
  modelsRequest = controller;
  try {
    const models = await fetchModels(state.key, controller.signal);
    state.models = models;
    state.modelsError = null;
    specCache.clear();
    const ids = models.map((m) => m.id);
    const first = state.panes[0];
    let chosen = first && ids.includes(first.modelId) && state.modelsLoaded ? first.modelId : null;
    if (!chosen && state.wantedModel && ids.includes(state.wantedModel)) chosen = state.wantedModel;
    if (!chosen && state.wantedModel && !ids.includes(state.wantedModel) && ids.length) {
      toast(`${state.wantedModel} is not served here; showing ${ids[0]}.`);
    }
    chosen = chosen || ids[0] || FALLBACK_MODEL;
    for (const pane of state.panes) {
      if (pane === first || !ids.includes(pane.modelId)) pane.modelId = pane === first ? chosen : ids[0];
      pruneValues(pane);
    }
    state.modelsLoaded = true;
  } catch (err) {
    if (err.name === "AbortError") return;
    state.modelsError = asReadable(err);
    // Still loading, or the server is restarting: try again by itself. A key problem waits for the user.
    if (state.modelsError.status === 503 || state.modelsError.status === 0) {
      clearTimeout(modelsRetry);
      modelsRetry = setTimeout(loadModels, 3000);
    }
  } finally {
    if (modelsRequest === controller) modelsRequest = null;
  }
  renderModelSelect();
  renderModelInfo();
  renderPanes();
  renderApi();
}

function pruneValues(pane) {
  const names = new Set(specsFor(pane).map((s) => s.name));
  if (!names.size) return;
  for (const name of Object.keys(pane.values)) if (!names.has(name)) delete pane.values[name];
  for (const name of Object.keys(pane.errors)) if (!names.has(name)) delete pane.errors[name];
}

function renderModelSelect() {
  const select = $("#model-select");
  const current = state.panes[0]?.modelId;
  const ids = state.models.length ? state.models.map((m) => m.id) : [current || FALLBACK_MODEL];
  select.replaceChildren(...ids.map((id) => {
    const model = modelById(id);
    return h("option", { value: id, title: model.display_name || id }, id);
  }));
  select.value = current;
}

function errorBox(err, extra) {
  return h("div", { class: "error-box", role: "alert" },
    h("strong", { class: "error-title" }, err.title),
    err.detail ? h("p", { class: "error-detail" }, err.detail) : null,
    err.hint ? h("p", { class: "error-hint" }, err.hint) : null,
    extra || null);
}

function renderModelInfo() {
  const card = $("#model-card");
  card.replaceChildren();
  const pane = state.panes[0];
  const model = modelById(pane.modelId);
  if (state.modelsError) {
    card.append(errorBox(state.modelsError,
      h("button", { type: "button", class: "btn ghost small", onclick: () => loadModels() }, "Retry")));
  }
  if (model.display_name) {
    const facts = [];
    if (model.parameter_count_label) facts.push(["Parameters", model.parameter_count_label]);
    if (model.context_length) facts.push(["Context", `${formatInt(model.context_length)} tokens`]);
    facts.push(["Quantization", !model.quantization || model.quantization === "none" ? "none" : model.quantization]);
    if (model.mixture_of_experts !== undefined) facts.push(["Mixture of experts", model.mixture_of_experts ? "yes" : "no"]);
    card.append(
      h("div", { class: "mc-name" }, model.display_name),
      model.demo ? h("p", { class: "demo-badge", title: "This is the built-in demo model: its answers are random text." }, "demo: random weights") : null,
      model.summary ? h("p", { class: "mc-summary" }, model.summary) : null,
      h("dl", { class: "mc-facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("a", { class: "mc-link", href: docsHref(model.id) }, "Model page →"),
    );
  } else if (!state.modelsError) {
    card.append(h("p", { class: "hint" }, "Loading the model list…"));
  }
  $("#top-model-link").href = docsHref(model.id);
  const chip = $("#model-chip");
  chip.replaceChildren(h("span", { class: "chip-id" }, model.id),
    model.demo ? h("span", { class: "demo-badge small" }, "demo: random weights") : null);
  const narrow = window.matchMedia("(max-width: 780px)").matches;
  $("#prompt").placeholder = narrow ? `Message ${model.id}…` : `Message ${model.id}…  Enter to send, Shift+Enter for a new line`;
}

function setModel(pane, id) {
  pane.modelId = id;
  pruneValues(pane);
  if (pane === state.panes[0]) {
    const url = new URL(location.href);
    url.searchParams.set("model", id);
    history.replaceState(null, "", url);
    if (state.models.length <= 1) for (const p of state.panes) p.modelId = id;
  }
  renderModelSelect();
  renderModelInfo();
  renderPanes();
  renderApi();
}

// ---- panes ---------------------------------------------------------------------------------------

function makePane(from) {
  return {
    id: nextId++,
    modelId: from ? from.modelId : (state.wantedModel || FALLBACK_MODEL),
    values: from ? structuredClone(from.values) : {},
    errors: {},
    controller: null,
    paramsOpen: false,
    stick: true,
    refs: {},
  };
}

function letter(pane) {
  return LETTERS[state.panes.indexOf(pane)] || "?";
}

function renderPanes() {
  const root = $("#panes");
  root.dataset.count = String(state.panes.length);
  root.replaceChildren(...state.panes.map(buildPane));
  for (const pane of state.panes) renderMessages(pane);
  updateControls();
}

function buildPane(pane) {
  const name = letter(pane);
  const compare = state.panes.length > 1;
  const toggle = h("button", {
    type: "button", class: "btn ghost small params-toggle", "aria-expanded": String(pane.paramsOpen),
    "aria-controls": `params-${pane.id}`,
  }, "Parameters");
  const chips = h("div", { class: "chips", "aria-label": "Changed parameters" });
  const head = h("header", { class: "pane-head" },
    compare ? h("span", { class: `pane-badge c${state.panes.indexOf(pane)}`, title: `Pane ${name}` }, name) : null,
    state.models.length > 1 ? h("select", {
      class: "select small pane-model", "aria-label": `Model for pane ${name}`,
      onchange: (ev) => setModel(pane, ev.target.value),
    }, state.models.map((m) => h("option", { value: m.id, selected: m.id === pane.modelId }, m.id))) : null,
    chips,
    toggle,
    compare ? h("button", {
      type: "button", class: "icon-btn pane-remove", title: `Remove pane ${name}`, "aria-label": `Remove pane ${name}`,
      onclick: () => removePane(pane),
    }, "×") : null,
  );
  const messages = h("div", { class: "messages", role: "log", "aria-live": "polite", "aria-label": `Conversation, pane ${name}` });
  messages.addEventListener("scroll", () => {
    pane.stick = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 60;
  });
  const paramsBody = h("div", { class: "params-body" });
  const params = h("aside", { class: "params", id: `params-${pane.id}`, "aria-label": `Parameters, pane ${name}` },
    h("div", { class: "params-head" },
      h("h2", {}, "Parameters"),
      h("button", { type: "button", class: "btn ghost small", onclick: () => resetAll(pane) }, "Reset all"),
      h("button", { type: "button", class: "icon-btn params-close", "aria-label": "Close parameters", onclick: () => openParams(pane, false) }, "×")),
    paramsBody);
  const el = h("section", { class: "pane", dataset: { pane: String(pane.id), letter: name } },
    head, h("div", { class: "pane-body" }, messages, params));
  el.classList.toggle("params-open", pane.paramsOpen);
  toggle.addEventListener("click", () => openParams(pane, !pane.paramsOpen));
  pane.refs = { el, messages, chips, paramsBody, toggle };
  renderPaneParams(pane);
  return el;
}

function openParams(pane, open) {
  pane.paramsOpen = open;
  pane.refs.el.classList.toggle("params-open", open);
  pane.refs.toggle.setAttribute("aria-expanded", String(open));
  if (open) pane.refs.paramsBody.querySelector("input, textarea, select")?.focus({ preventScroll: true });
}

function renderPaneParams(pane) {
  const specs = specsFor(pane);
  pane.refs.paramsBody.replaceChildren(renderParams(specs, pane.values, pane.errors, {
    idPrefix: `p${pane.id}`,
    onChange: () => { renderChips(pane); renderApi(); },
  }));
  renderChips(pane);
}

function renderChips(pane) {
  const specs = specsFor(pane);
  const changed = changedParams(specs, pane.values);
  const names = Object.keys(changed);
  const chips = names.map((name) => {
    const spec = specs.find((s) => s.name === name);
    return h("span", { class: "chip", title: spec.help }, h("span", { class: "chip-k" }, name), " ", formatValue(spec, pane.values[name]));
  });
  pane.refs.chips.replaceChildren(...(chips.length ? chips : [h("span", { class: "chip muted" }, "default parameters")]));
  pane.refs.toggle.textContent = names.length ? `Parameters · ${names.length}` : "Parameters";
  pane.refs.el.classList.toggle("has-errors", Object.keys(pane.errors).length > 0);
}

function resetAll(pane) {
  for (const key of Object.keys(pane.values)) delete pane.values[key];
  for (const key of Object.keys(pane.errors)) delete pane.errors[key];
  renderPaneParams(pane);
  renderApi();
}

function addPane() {
  if (state.panes.length >= MAX_PANES || state.running) return;
  const source = state.panes[state.panes.length - 1];
  const pane = makePane(source);
  // The new pane starts from the first pane's answers, so that its conversation is the same one.
  for (const turn of state.turns) {
    const answer = turn.answers[state.panes[0].id];
    if (answer) turn.answers[pane.id] = cloneAnswer(answer);
  }
  state.panes.push(pane);
  renderPanes();
  renderApi();
  openParams(pane, true);
  pane.refs.el.scrollIntoView({ block: "nearest", inline: "nearest" });
}

function cloneAnswer(answer) {
  if (!answer) return null;
  return {
    ...answer, view: null, toolCalls: answer.toolCalls.map((c) => ({ ...c })),
    results: answer.results && [...answer.results], drafts: [...answer.drafts], next: cloneAnswer(answer.next),
  };
}

function removePane(pane) {
  if (state.panes.length <= 1) return;
  pane.controller?.abort();
  state.panes = state.panes.filter((p) => p !== pane);
  for (const turn of state.turns) delete turn.answers[pane.id];
  renderModelInfo();
  renderPanes();
  renderApi();
}

// ---- messages ------------------------------------------------------------------------------------

function renderAllMessages() {
  for (const pane of state.panes) renderMessages(pane);
  updateControls();
}

function renderMessages(pane) {
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
      type: "button", class: "suggestion", onclick: () => { const p = $("#prompt"); p.value = text; p.focus(); renderApi(); },
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
      renderMessages(pane);
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
  const cancel = () => { state.editing = null; renderAllMessages(); };
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
  renderAllMessages();
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

// ---- generating ------------------------------------------------------------------------------------

function mergeRoles(messages) {
  // Two user (or two plain assistant) messages in a row become one; tool calls and results never merge.
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
function chainMessages(answer, through = null) {
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

/** The messages of `pane` for the turns before `upto`, then the user message `user`, then (to go on
 * after tool results) that turn's answers up to and with `through`. */
function buildMessages(pane, upto, user, through = null) {
  const messages = [];
  if (state.system.trim()) messages.push({ role: "system", content: state.system });
  for (const turn of state.turns.slice(0, upto)) {
    messages.push({ role: "user", content: turn.user });
    messages.push(...chainMessages(turn.answers[pane.id]));
  }
  messages.push({ role: "user", content: user });
  if (through) messages.push(...chainMessages(state.turns[upto].answers[pane.id], through));
  return mergeRoles(messages);
}

function requestBody(pane, messages, { stream = true, afterResults = false } = {}) {
  const body = {
    model: pane.modelId, messages, ...changedParams(specsFor(pane), pane.values), ...structuredFields({ afterResults }),
  };
  if (stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return body;
}

function paramProblems() {
  for (const pane of state.panes) {
    const names = Object.keys(pane.errors);
    if (names.length) return { pane, name: names[0], text: pane.errors[names[0]] };
  }
  return null;
}

/** The answer `answer` follows in its chain (the one whose tool results it answers), or null. */
function parentOf(turn, pane, answer) {
  for (let a = turn.answers[pane.id]; a; a = a.next) if (a.next === answer) return a;
  return null;
}

function leafOf(answer) {
  let a = answer;
  while (a && a.next) a = a.next;
  return a;
}

/** Answer `turn` in `pane`; with `parent` (an answer whose tool results are in), go on after it. */
async function generate(pane, turn, parent = null) {
  const index = state.turns.indexOf(turn);
  const answer = {
    id: nextId++, text: "", toolCalls: [], results: null, drafts: [], next: null,
    status: "streaming", finish: null, usage: null, chunks: 0, error: null, edited: false,
    model: pane.modelId, tStart: performance.now(), tFirst: 0, tEnd: 0, view: null,
  };
  if (parent) parent.next = answer;
  else turn.answers[pane.id] = answer;
  const body = requestBody(pane, buildMessages(pane, index, turn.user, parent), { afterResults: Boolean(parent) });
  const controller = new AbortController();
  pane.controller = controller;
  state.running += 1;
  renderMessages(pane);
  updateControls();
  let frame = 0;
  const paint = () => {
    frame = 0;
    updateAnswer(answer, turn, pane);
    scrollDown(pane);
  };
  try {
    await streamChat({
      body, key: state.key, signal: controller.signal,
      onText: (text) => {
        if (!answer.tFirst) answer.tFirst = performance.now();
        answer.text += text;
        answer.chunks += 1;
        answer.view?.textNode.appendData(text);
        if (!frame) frame = requestAnimationFrame(paint);
      },
      onToolCalls: (deltas) => {
        if (!answer.tFirst) answer.tFirst = performance.now();
        addToolCallDeltas(answer.toolCalls, deltas);
        if (!frame) frame = requestAnimationFrame(paint);
      },
      onFinish: (reason) => { answer.finish = reason; },
      onUsage: (usage) => { answer.usage = usage; },
    });
    answer.status = "done";
  } catch (err) {
    if (err.name === "AbortError") answer.status = "stopped";
    else { answer.status = "error"; answer.error = asReadable(err); }
  } finally {
    if (frame) cancelAnimationFrame(frame);
    answer.tEnd = performance.now();
    if (pane.controller === controller) pane.controller = null;
    state.running -= 1;
    updateAnswer(answer, turn, pane);
    scrollDown(pane);
    updateControls();
    if (!state.running) renderAllMessages();
  }
}

function regenerate(pane, turn, answer) {
  const parent = parentOf(turn, pane, answer);
  if (!parent) return runTurn(state.turns.indexOf(turn), [pane]);
  if (state.running) return;
  if (!structuredReady()) return;
  return generate(pane, turn, parent);
}

/** Send the results of `answer`'s tool calls; the model goes on in the same pane. */
function submitResults(pane, turn, answer, results) {
  if (state.running) { toast("Wait for the answers, or stop them (Esc)."); return; }
  if (!structuredReady()) return;
  answer.results = results;
  state.editing = null;
  renderApi();
  return generate(pane, turn, answer);
}

/** False (and says why) while the output format or the tools hold an error. */
function structuredReady() {
  const problem = structuredProblem();
  if (!problem) return true;
  focusSetting(problem.field);
  toast(problem.text);
  return false;
}

/** Show a setting of the sidebar (the drawer on a narrow window) and put the focus in it. */
function focusSetting(selector) {
  const toggle = $("#settings-toggle");
  if (getComputedStyle(toggle).display !== "none" && !document.body.classList.contains("settings-open")) toggle.click();
  const field = $(selector);
  if (!field) return;
  field.focus({ preventScroll: true });
  field.scrollIntoView({ block: "nearest" });
}

function runTurn(index, panes = state.panes) {
  const turn = state.turns[index];
  if (!turn || state.running) return;
  if (!structuredReady()) return;
  for (const pane of panes) delete turn.answers[pane.id];
  renderAllMessages();
  renderApi();
  return Promise.all(panes.filter((p) => state.panes.includes(p)).map((pane) => generate(pane, turn)));
}

function send() {
  const prompt = $("#prompt");
  const text = prompt.value;
  if (!text.trim()) { prompt.focus(); return; }
  if (state.running) { toast("Wait for the answer, or stop it (Esc)."); return; }
  const problem = paramProblems();
  if (problem) {
    openParams(problem.pane, true);
    toast(`Fix ${problem.name}${state.panes.length > 1 ? ` in pane ${letter(problem.pane)}` : ""}: ${problem.text}`);
    return;
  }
  if (!structuredReady()) return;
  state.editing = null;
  state.turns.push({ id: nextId++, user: text, answers: {} });
  prompt.value = "";
  runTurn(state.turns.length - 1);
}

function stopAll() {
  for (const pane of state.panes) pane.controller?.abort();
}

function clearConversation() {
  if (state.running) return;
  state.turns = [];
  state.editing = null;
  renderAllMessages();
  renderApi();
  $("#prompt").focus();
}

function updateControls() {
  const busy = state.running > 0;
  $("#send-btn").hidden = busy;
  $("#stop-btn").hidden = !busy;
  document.body.classList.toggle("busy", busy);
  const compare = $("#compare-btn");
  compare.textContent = state.panes.length > 1 ? "Add pane" : "Compare";
  compare.title = state.panes.length > 1 ? "Add another pane with its own parameters" : "Answer the same conversation with two settings side by side";
  compare.disabled = busy || state.panes.length >= MAX_PANES;
  $("#regenerate-btn").disabled = busy || !state.turns.length;
  $("#clear-btn").disabled = busy || !state.turns.length;
}

// ---- API tab ------------------------------------------------------------------------------------

function apiRequest() {
  const select = $("#api-pane");
  const pick = $("#api-pane-pick");
  pick.hidden = state.panes.length < 2;
  const previous = select.value;
  select.replaceChildren(...state.panes.map((p) => h("option", { value: String(p.id) }, `Pane ${letter(p)}`)));
  if (state.panes.some((p) => String(p.id) === previous)) select.value = previous;
  const pane = state.panes.find((p) => String(p.id) === select.value) || state.panes[0];
  const draft = $("#prompt").value;
  let messages;
  let note;
  let parent = null;
  if (draft.trim()) {
    messages = buildMessages(pane, state.turns.length, draft);
    note = state.turns.length ? "Messages: the conversation so far and your draft." : "Messages: your draft.";
  } else if (state.turns.length) {
    const turn = state.turns[state.turns.length - 1];
    parent = parentOf(turn, pane, leafOf(turn.answers[pane.id]));
    messages = buildMessages(pane, state.turns.length - 1, turn.user, parent);
    note = parent ? "Messages: the request behind the last answer, with the tool results."
      : "Messages: the request behind the last answer.";
  } else {
    messages = buildMessages(pane, 0, EXAMPLE_PROMPT);
    note = "Messages: an example; type a message in the Chat tab to use yours.";
  }
  const body = requestBody(pane, messages, { stream: false, afterResults: Boolean(parent) });
  if ($("#api-stream").checked) body.stream = true;
  const problem = structuredProblem();
  if (problem) note += ` Not sendable yet: ${problem.text}`;
  return { body, note };
}

function renderApi() {
  if (state.view !== "api") return;
  const { body, note } = apiRequest();
  $("#api-messages-note").textContent = note;
  $("#snippets").replaceChildren(...snippets(location.origin, body).map((s) => {
    const code = h("code", { id: `snippet-${s.id}`, class: `lang-${s.lang}` }, s.code);
    const copy = h("button", { type: "button", class: "btn ghost small copy", "aria-label": `Copy the ${s.title} snippet` }, "Copy");
    copy.addEventListener("click", async () => {
      const ok = await copyText(s.code);
      copy.textContent = ok ? "Copied ✓" : "Copy failed";
      setTimeout(() => { copy.textContent = "Copy"; }, 1500);
    });
    return h("figure", { class: "snippet", dataset: { snippet: s.id } },
      h("figcaption", {}, h("span", {}, s.title), copy), h("pre", {}, code));
  }));
}

function renderModeChips() {
  $("#mode-chips").replaceChildren(...structuredChips().map((chip) => h("button", {
    type: "button", class: "mode-chip", title: `${chip.title} (change it in the settings)`,
    onclick: () => focusSetting(chip.field),
  }, chip.text)));
}

function showView(view) {
  state.view = view;
  for (const [name, tab, panel] of [["chat", "#tab-chat", "#chat-view"], ["api", "#tab-api", "#api-view"]]) {
    const active = name === view;
    $(tab).setAttribute("aria-selected", String(active));
    $(tab).tabIndex = active ? 0 : -1;
    $(panel).hidden = !active;
  }
  if (view === "api") renderApi();
  else $("#prompt").focus();
}

// ---- wiring ------------------------------------------------------------------------------------------

function bind() {
  const prompt = $("#prompt");
  $("#composer").addEventListener("submit", (ev) => { ev.preventDefault(); send(); });
  prompt.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      send();
    }
  });
  prompt.addEventListener("input", () => renderApi());
  $("#stop-btn").addEventListener("click", stopAll);
  $("#compare-btn").addEventListener("click", addPane);
  $("#clear-btn").addEventListener("click", clearConversation);
  $("#regenerate-btn").addEventListener("click", () => runTurn(state.turns.length - 1));
  $("#model-select").addEventListener("change", (ev) => setModel(state.panes[0], ev.target.value));

  initStructured({ onChange: () => { renderModeChips(); renderApi(); } });
  renderModeChips();

  const system = $("#system-prompt");
  system.value = state.system;
  system.addEventListener("input", () => { state.system = system.value; storage.set(SYSTEM_STORAGE, system.value); renderApi(); });

  const key = $("#api-key");
  key.value = state.key;
  let keyTimer = 0;
  key.addEventListener("input", () => {
    state.key = key.value.trim();
    storage.set(KEY_STORAGE, state.key);
    clearTimeout(keyTimer);
    keyTimer = setTimeout(loadModels, 350);
  });
  $("#key-show").addEventListener("click", (ev) => {
    const show = key.type === "password";
    key.type = show ? "text" : "password";
    ev.currentTarget.textContent = show ? "Hide" : "Show";
    ev.currentTarget.setAttribute("aria-pressed", String(show));
  });

  const tabs = [$("#tab-chat"), $("#tab-api")];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => showView(i === 0 ? "chat" : "api"));
    tab.addEventListener("keydown", (ev) => {
      if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
      const next = tabs[(i + 1) % 2];
      next.focus();
      showView(next === tabs[0] ? "chat" : "api");
    });
  });
  $("#api-pane").addEventListener("change", renderApi);
  $("#api-stream").addEventListener("change", renderApi);

  const toggle = $("#settings-toggle");
  toggle.addEventListener("click", () => {
    const open = !document.body.classList.contains("settings-open");
    document.body.classList.toggle("settings-open", open);
    toggle.setAttribute("aria-expanded", String(open));
  });
  $("#model-chip").addEventListener("click", () => {
    if (getComputedStyle(toggle).display !== "none") toggle.click();
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape" || ev.defaultPrevented) return;
    const open = state.panes.find((p) => p.paramsOpen);
    if (document.body.classList.contains("settings-open")) toggle.click();
    else if (state.running) stopAll();
    else if (open) openParams(open, false);
  });
}

function init() {
  bind();
  state.panes = [makePane()];
  renderModelSelect();
  renderModelInfo();
  renderPanes();
  loadModels();
  $("#prompt").focus();
}

init();
