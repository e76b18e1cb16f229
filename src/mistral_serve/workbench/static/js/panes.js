// The panes: one conversation each (several to compare settings), with its own model and
// parameters; the pane frame, its parameter panel and the chips of its changed parameters.

import { $, h } from "./dom.js";
import { cloneAnswer } from "./conversation.js";
import { changedParams, formatValue, renderParams } from "./params.js";
import { setModel } from "./models.js";
import { MAX_PANES, letter, makePane, render, specsFor, state } from "./store.js";

/** The panes view: every pane built anew (their messages are drawn after). */
export function renderPanes() {
  const root = $("#panes");
  root.dataset.count = String(state.panes.length);
  root.replaceChildren(...state.panes.map(buildPane));
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

/** Open or close the pane's parameter panel (the focus goes in when it opens). */
export function openParams(pane, open) {
  pane.paramsOpen = open;
  pane.refs.el.classList.toggle("params-open", open);
  pane.refs.toggle.setAttribute("aria-expanded", String(open));
  if (open) pane.refs.paramsBody.querySelector("input, textarea, select")?.focus({ preventScroll: true });
}

/** The params view: the pane's parameter controls, and its chips. */
export function renderPaneParams(pane) {
  const specs = specsFor(pane);
  pane.refs.paramsBody.replaceChildren(renderParams(specs, pane.values, pane.errors, {
    idPrefix: `p${pane.id}`,
    onChange: () => render({ chips: pane }),
    // Open stays open across redraws (Reset all, another model).
    advancedOpen: pane.advancedOpen,
    onAdvancedToggle: (open) => { pane.advancedOpen = open; },
  }));
  renderChips(pane);
}

/** The chips view: the pane's changed parameters, in its head and on its Parameters button. */
export function renderChips(pane) {
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
  render({ params: pane });
}

/** Compare: one more pane, with the last pane's settings and the first pane's answers. */
export function addPane() {
  if (state.panes.length >= MAX_PANES || state.running) return;
  const source = state.panes[state.panes.length - 1];
  const pane = makePane(source);
  // The new pane starts from the first pane's answers, so that its conversation is the same one.
  for (const turn of state.turns) {
    const answer = turn.answers[state.panes[0].id];
    if (answer) turn.answers[pane.id] = cloneAnswer(answer);
  }
  state.panes.push(pane);
  render({ panes: true });
  openParams(pane, true);
  pane.refs.el.scrollIntoView({ block: "nearest", inline: "nearest" });
}

function removePane(pane) {
  if (state.panes.length <= 1) return;
  pane.controller?.abort();
  state.panes = state.panes.filter((p) => p !== pane);
  for (const turn of state.turns) delete turn.answers[pane.id];
  render({ models: true, panes: true });
}

/** The first parameter holding an invalid value, {pane, name, text}, or null. */
export function paramProblem() {
  for (const pane of state.panes) {
    const names = Object.keys(pane.errors);
    if (names.length) return { pane, name: names[0], text: pane.errors[names[0]] };
  }
  return null;
}
