// The workbench: model picker and card, conversation panes (one, or several to compare settings),
// streamed answers with their numbers, generated parameter controls, output format and tools
// (shared by the panes), tool calls and their results, and the API tab.
//
// This module wires the page: it hands the view modules' drawing functions to the render path
// (store.js), binds the controls, and starts. State changes go through render() only.

import { $, h } from "./dom.js";
import { initDialects, renderApi, showView } from "./api-tab.js";
import { clearConversation, focusSetting, runTurn, send, stopAll } from "./chat.js";
import { paintAnswer, renderMessages } from "./messages.js";
import { loadModels, renderModels, setModel } from "./models.js";
import { addPane, openParams, renderChips, renderPaneParams, renderPanes } from "./panes.js";
import { KEY_STORAGE, MAX_PANES, SYSTEM_STORAGE, defineViews, makePane, render, state, storage } from "./store.js";
import { initStructured, structuredChips } from "./structured.js";

/** The controls view: Send or Stop, and the toolbar buttons. */
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

/** The mode view: a chip in the toolbar for the output format and the tools, each opening its setting. */
function renderModeChips() {
  $("#mode-chips").replaceChildren(...structuredChips().map((chip) => h("button", {
    type: "button", class: "mode-chip", title: `${chip.title} (change it in the settings)`,
    onclick: () => focusSetting(chip.field),
  }, chip.text)));
}

defineViews({
  models: renderModels, panes: renderPanes, params: renderPaneParams, messages: renderMessages, chips: renderChips,
  mode: renderModeChips, controls: updateControls, api: renderApi, answer: paintAnswer,
});

function bind() {
  const prompt = $("#prompt");
  $("#composer").addEventListener("submit", (ev) => { ev.preventDefault(); send(); });
  prompt.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      send();
    }
  });
  prompt.addEventListener("input", () => render());
  $("#stop-btn").addEventListener("click", stopAll);
  $("#compare-btn").addEventListener("click", addPane);
  $("#clear-btn").addEventListener("click", clearConversation);
  $("#regenerate-btn").addEventListener("click", () => runTurn(state.turns.length - 1));
  $("#model-select").addEventListener("change", (ev) => setModel(state.panes[0], ev.target.value));

  initStructured({ onChange: () => render({ mode: true }) });

  const system = $("#system-prompt");
  system.value = state.system;
  system.addEventListener("input", () => { state.system = system.value; storage.set(SYSTEM_STORAGE, system.value); render(); });

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
  initDialects();
  $("#api-pane").addEventListener("change", () => render());
  $("#api-stream").addEventListener("change", () => render());

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
  render({ models: true, panes: true, mode: true });
  loadModels();
  $("#prompt").focus();
}

init();
