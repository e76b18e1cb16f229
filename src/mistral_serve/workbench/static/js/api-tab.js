// The API tab: the exact request of the current settings as cURL and Python, with copy buttons,
// and the switch between the Chat and API tabs.

import { $, copyText, h } from "./dom.js";
import { apiMessages } from "./conversation.js";
import { EXAMPLE_PROMPT, snippets } from "./snippets.js";
import { letter, paneRequest, render, state } from "./store.js";
import { structuredProblem } from "./structured.js";

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
