// Tool calls in the conversation: a card per call, the form for their results, and the results as
// sent. Everything the model wrote (names, ids, arguments) goes in as text, never as HTML.

import { h } from "./dom.js";

/** Join streamed tool-call deltas into `calls` ([{id, type, name, arguments}]), by index. */
export function addToolCallDeltas(calls, deltas) {
  for (const d of deltas) {
    if (!d || typeof d !== "object") continue;
    let i = Number.isInteger(d.index) ? d.index : calls.length - (d.id || !calls.length ? 0 : 1);
    i = Math.min(Math.max(i, 0), calls.length); // no holes
    const call = calls[i] || (calls[i] = { id: "", type: "function", name: "", arguments: "" });
    if (typeof d.id === "string" && d.id) call.id = d.id;
    if (typeof d.type === "string" && d.type) call.type = d.type;
    const fn = d.function || {};
    if (typeof fn.name === "string") call.name += fn.name;
    if (typeof fn.arguments === "string") call.arguments += fn.arguments;
  }
  return calls;
}

/** A call as the API takes it back in an assistant message. */
export function wireCall(call) {
  return { id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } };
}

/** The arguments pretty-printed when they parse; otherwise as they came. */
export function prettyArguments(text) {
  if (!text.trim()) return { text: "", ok: false };
  try { return { text: JSON.stringify(JSON.parse(text), null, 2), ok: true }; } catch { return { text, ok: false }; }
}

export function toolCallCard(call, streaming) {
  const args = prettyArguments(call.arguments);
  return h("div", { class: "tool-call", role: "group", "aria-label": `Tool call ${call.name}` },
    h("div", { class: "tc-head" },
      h("span", { class: "tc-kind", "aria-hidden": "true" }, "ƒ"),
      h("span", { class: "visually-hidden" }, "Tool call "),
      h("code", { class: "tc-name" }, call.name || "…"),
      call.id ? h("code", { class: "tc-id", title: "Call id" }, call.id) : null),
    h("pre", { class: "tc-args", "aria-label": "Arguments" },
      args.text || (streaming ? "…" : "{}")),
    !args.ok && !streaming && call.arguments.trim()
      ? h("p", { class: "tc-warn" }, "These arguments are not valid JSON.") : null);
}

/**
 * The form under an answer's calls: one field per call, then Send results. `drafts` keeps what is
 * typed across re-renders; onSubmit(results) is called with every field filled.
 */
export function toolResultsForm(calls, drafts, { idPrefix, disabled, onSubmit }) {
  const error = h("p", { class: "field-error", role: "alert", hidden: true });
  const fields = calls.map((call, i) => {
    const id = `${idPrefix}-${i}`;
    const area = h("textarea", {
      id, class: "textarea small mono tool-result-input", rows: 2, spellcheck: false,
      placeholder: "What the function returned, e.g. {\"temperature\": 18}",
    });
    area.value = drafts[i] || "";
    area.addEventListener("input", () => { drafts[i] = area.value; });
    area.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); }
    });
    return h("div", { class: "tool-result-field" },
      h("label", { class: "field-label", htmlFor: id }, "Result of ", h("code", {}, call.name), call.id ? h("span", { class: "muted" }, ` · ${call.id}`) : null),
      area);
  });
  const form = h("form", { class: "tool-form", "aria-label": "Tool results" },
    h("p", { class: "tool-form-title" }, calls.length > 1 ? "Run the functions, then send their results" : "Run the function, then send its result"),
    fields, error,
    h("div", { class: "tool-form-actions" },
      h("button", { type: "submit", class: "btn primary small", disabled }, calls.length > 1 ? "Send results" : "Send result"),
      h("span", { class: "hint" }, "Ctrl+Enter sends")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const empty = calls.findIndex((_, i) => !(drafts[i] || "").trim());
    if (empty >= 0) {
      error.textContent = calls.length > 1 ? "Enter a result for every call." : "Enter the result.";
      error.hidden = false;
      form.querySelectorAll("textarea")[empty].focus();
      return;
    }
    error.hidden = true;
    onSubmit(calls.map((_, i) => drafts[i]));
  });
  return form;
}

/** The results as they went back to the model, one `tool` message per call. */
export function toolResultsView(calls, results) {
  return h("article", { class: "msg tool" },
    h("div", { class: "msg-role" }, calls.length > 1 ? "Tool results" : "Tool result"),
    calls.map((call, i) => h("div", { class: "tool-result" },
      h("div", { class: "tc-head" },
        h("span", { class: "tc-kind", "aria-hidden": "true" }, "↩"),
        h("code", { class: "tc-name" }, call.name),
        call.id ? h("code", { class: "tc-id", title: "Call id" }, call.id) : null),
      h("pre", { class: "tc-args" }, results[i]))));
}
