// The workbench's state, what derives from it, and the one path that redraws the page after a change.

import { requestBody } from "./conversation.js";
import { dialectId } from "./dialects.js";
import { changedParams, paramSpecs } from "./params.js";
import { structuredFields } from "./structured.js";

export const KEY_STORAGE = "mistral-serve.apiKey";
export const SYSTEM_STORAGE = "mistral-serve.systemPrompt";
export const DIALECT_STORAGE = "mistral-serve.apiDialect";
export const MAX_PANES = 4;
export const FALLBACK_MODEL = "open-mistral-7b";
const LETTERS = "ABCD";

export const storage = {
  get(key) { try { return localStorage.getItem(key) || ""; } catch { return ""; } },
  set(key, value) { try { if (value) localStorage.setItem(key, value); else localStorage.removeItem(key); } catch { /* private mode */ } },
};

export const state = {
  models: [],
  modelsError: null,
  modelsLoaded: false,
  key: storage.get(KEY_STORAGE),
  system: storage.get(SYSTEM_STORAGE),
  wantedModel: new URLSearchParams(location.search).get("model"),
  turns: [], // {id, user, answers: {paneId: answer}}; an answer with tool calls and results has .next
  panes: [], // {id, modelId, values, errors, controller, paramsOpen, advancedOpen, stick, refs}
  running: 0,
  editing: null, // {turnId, paneId, role, answer}
  view: "chat",
  dialect: dialectId(storage.get(DIALECT_STORAGE)), // the API tab's dialect (dialects.js)
};

let lastId = 0;
/** A new id for a pane, a turn or an answer. */
export const newId = () => ++lastId;

// ---- models and panes ------------------------------------------------------------------------------

const specCache = new Map();

export function setModels(models) {
  state.models = models;
  specCache.clear();
}

export function modelById(id) {
  return state.models.find((m) => m.id === id) || { id, json_request_schema: null };
}

/** The parameter controls of the pane's model. */
export function specsFor(pane) {
  const model = modelById(pane.modelId);
  const key = `${model.id}:${state.models.indexOf(model)}`;
  if (!specCache.has(key)) specCache.set(key, paramSpecs(model.json_request_schema, model));
  return specCache.get(key);
}

/** Drop the values (and errors) of parameters the pane's model does not take. */
export function pruneValues(pane) {
  const names = new Set(specsFor(pane).map((s) => s.name));
  if (!names.size) return;
  for (const name of Object.keys(pane.values)) if (!names.has(name)) delete pane.values[name];
  for (const name of Object.keys(pane.errors)) if (!names.has(name)) delete pane.errors[name];
}

export function docsHref(id) {
  return `/docs/models/${id.split("/").map(encodeURIComponent).join("/")}`;
}

/** A new pane: a copy of `from`'s model and values, or the wanted model with the defaults. */
export function makePane(from) {
  return {
    id: newId(),
    modelId: from ? from.modelId : (state.wantedModel || FALLBACK_MODEL),
    values: from ? structuredClone(from.values) : {},
    errors: {},
    controller: null,
    paramsOpen: false,
    advancedOpen: from ? from.advancedOpen : false, // the parameters' Advanced group
    stick: true,
    refs: {},
  };
}

export function letter(pane) {
  return LETTERS[state.panes.indexOf(pane)] || "?";
}

/** The request `pane` sends for `messages` (after tool results: `afterResults`). */
export function paneRequest(pane, messages, { stream = true, afterResults = false } = {}) {
  return requestBody(pane.modelId, messages, {
    params: changedParams(specsFor(pane), pane.values), structured: structuredFields({ afterResults }), stream,
  });
}

// ---- the render path ----------------------------------------------------------------------------------

const views = {};

/**
 * The view modules' drawing functions, by the part of the page they draw: models (picker, card,
 * chip), panes (every pane, built anew), params, messages, chips (of one pane), mode (the output
 * format and tools chips), controls (the toolbar and composer buttons), api (the API tab), answer
 * (one answer in place, while it streams).
 */
export function defineViews(drawers) {
  Object.assign(views, drawers);
}

const panesOf = (which) => (which === true ? state.panes : which ? [which] : []);

/**
 * The one way the page is redrawn after a state change. `what` names the parts the change touched:
 * models, panes and mode take true; params, messages and chips take a pane, or true for every pane.
 * New panes get their messages. The controls and the API tab derive from all of the state: they are
 * redrawn every time.
 */
export function render(what = {}) {
  if (what.models) views.models();
  if (what.panes) views.panes();
  for (const pane of panesOf(what.params)) views.params(pane);
  for (const pane of panesOf(what.panes || what.messages)) views.messages(pane);
  for (const pane of panesOf(what.chips)) views.chips(pane);
  if (what.mode) views.mode();
  views.controls();
  views.api();
}

/** Draw one answer where it stands, as it streams (no other part changes). */
export function paint(answer, turn, pane) {
  views.answer(answer, turn, pane);
}
