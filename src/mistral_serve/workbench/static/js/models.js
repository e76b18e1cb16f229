// The models: loading the list (again by itself while the server starts), choosing one, and the
// model picker, card and chip that show it.

import { $, errorBox, formatInt, h, toast } from "./dom.js";
import { asReadable, fetchModels } from "./api.js";
import { FALLBACK_MODEL, docsHref, modelById, pruneValues, render, setModels, state } from "./store.js";

let modelsRequest = null;
let modelsRetry = 0;

export async function loadModels() {
  clearTimeout(modelsRetry);
  modelsRequest?.abort();
  const controller = new AbortController();
  modelsRequest = controller;
  try {
    const models = await fetchModels(state.key, controller.signal);
    setModels(models);
    state.modelsError = null;
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
  render({ models: true, panes: true });
}

/** Give `pane` the model `id`; the first pane's model goes in the address, and to every pane when
 * only one model is served. */
export function setModel(pane, id) {
  pane.modelId = id;
  pruneValues(pane);
  if (pane === state.panes[0]) {
    const url = new URL(location.href);
    url.searchParams.set("model", id);
    history.replaceState(null, "", url);
    if (state.models.length <= 1) for (const p of state.panes) p.modelId = id;
  }
  render({ models: true, panes: true });
}

/** The models view: the picker, the card of the first pane's model, its chip and the prompt's placeholder. */
export function renderModels() {
  renderModelSelect();
  renderModelInfo();
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
