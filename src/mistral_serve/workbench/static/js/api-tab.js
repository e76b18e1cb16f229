// The API tab: the exact request of the current settings as cURL and Python, with copy buttons, in
// the API dialect picked (OpenAI Chat Completions, OpenAI Responses, Anthropic Messages, Ollama;
// kept in this browser), with a note on what that dialect's call leaves out; and the switch between
// the Chat and API tabs.

import { $, copyText, h } from "./dom.js";
import { apiMessages } from "./conversation.js";
import { DIALECTS, DIALECT_IDS, dialectId, leftOutNote, toDialect } from "./dialects.js";
import { EXAMPLE_PROMPT, snippets } from "./snippets.js";
import { DIALECT_STORAGE, letter, paneRequest, render, state, storage } from "./store.js";
import { structuredProblem } from "./structured.js";

/** The dialect picker: a radio group (arrow keys move between the dialects), drawn once. */
export function initDialects() {
  const root = $("#api-dialects");
  root.replaceChildren(...DIALECT_IDS.map((id) => {
    const radio = h("input", { type: "radio", name: "api-dialect", value: id, checked: id === state.dialect });
    radio.addEventListener("change", () => {
      if (!radio.checked) return;
      state.dialect = dialectId(id);
      storage.set(DIALECT_STORAGE, state.dialect);
      render();
    });
    return h("label", { dataset: { dialect: id } }, radio, h("span", {}, DIALECTS[id].title));
  }));
}

/** The request of the pane picked in the tab, and a note on its messages. */
function apiRequest() {
  const select = $("#api-pane");
  const pick = $("#api-pane-pick");
  pick.hidden = state.panes.length < 2;
  const previous = select.value;
  select.replaceChildren(...state.panes.map((p) => h("option", { value: String(p.id) }, `Pane ${letter(p)}`)));
  if (state.panes.some((p) => String(p.id) === previous)) select.value = previous;
  const pane = state.panes.find((p) => String(p.id) === select.value) || state.panes[0];
  const request = apiMessages(state, pane.id, $("#prompt").value, EXAMPLE_PROMPT);
  const body = paneRequest(pane, request.messages, { stream: false, afterResults: request.afterResults });
  if ($("#api-stream").checked) body.stream = true;
  const problem = structuredProblem();
  const note = problem ? `${request.note} Not sendable yet: ${problem.text}` : request.note;
  return { body, note };
}

/** The api view: the snippets, while the tab shows (nothing to do on the Chat tab). */
export function renderApi() {
  if (state.view !== "api") return;
  const { body: chat, note } = apiRequest();
  $("#api-messages-note").textContent = note;
  const dialect = dialectId(state.dialect);
  for (const radio of document.querySelectorAll("#api-dialects input")) radio.checked = radio.value === dialect;
  const { path, also } = DIALECTS[dialect];
  $("#api-endpoint").replaceChildren(h("code", {}, `POST ${path}`), also ? ` (also at ${also})` : "");
  const converted = toDialect(dialect, chat);
  const leftOut = leftOutNote(dialect, converted);
  $("#api-left-out").textContent = leftOut;
  $("#api-left-out").hidden = !leftOut;
  $("#snippets").replaceChildren(...snippets(location.origin, converted.body, dialect).map((s) => {
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

/** Show the Chat or the API tab. */
export function showView(view) {
  state.view = view;
  for (const [name, tab, panel] of [["chat", "#tab-chat", "#chat-view"], ["api", "#tab-api", "#api-view"]]) {
    const active = name === view;
    $(tab).setAttribute("aria-selected", String(active));
    $(tab).tabIndex = active ? 0 : -1;
    $(panel).hidden = !active;
  }
  render();
  if (view === "chat") $("#prompt").focus();
}
