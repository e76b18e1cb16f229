// Parameter controls generated from the model's json_request_schema: ranges, defaults and help
// come from the schema; only values that differ from the schema default are sent. The schema's
// workbench keys place them, as the hub's workbench does: the fields named in `basic` show by
// default, the rest sit in a closed "Advanced" group, each group in `x-order` order.

import { h } from "./dom.js";

// Fields the workbench sets itself, or cannot show (n > 1, logprobs, tools...).
export const NOT_CONTROLS = new Set(["model", "messages", "stream", "stream_options", "n", "logprobs",
  "top_logprobs", "tools", "tool_choice", "parallel_tool_calls", "response_format", "max_completion_tokens"]);

export const BASIC = "Basic";
export const ADVANCED = "Advanced";
// Length fields get the model's context as their upper bound in the UI.
const LENGTH_FIELDS = new Set(["max_tokens", "min_tokens", "max_completion_tokens"]);

function resolve(node, defs) {
  if (node && node.$ref) return defs[node.$ref.split("/").pop()] || {};
  return node || {};
}

/** The schema properties as control specs, in display order: the basic ones, then the advanced,
 * each by x-order (a property without one keeps its place in the schema, after those with one).
 * A schema without a `basic` list shows everything. */
export function paramSpecs(schema, model = {}) {
  if (!schema || !schema.properties) return [];
  const defs = schema.$defs || {};
  const basic = Array.isArray(schema.basic) ? new Set(schema.basic) : null;
  const specs = [];
  for (const [index, [name, raw]] of Object.entries(schema.properties).entries()) {
    if (NOT_CONTROLS.has(name) || raw["x-no-effect"] || raw["x-unsupported"]) continue;
    const node = resolve(raw, defs);
    const variants = (node.anyOf || [node]).map((v) => resolve(v, defs));
    const nullable = variants.some((v) => v.type === "null");
    const real = variants.filter((v) => v.type !== "null");
    const spec = {
      name, label: name, help: node.description || raw.description || "",
      default: "default" in node ? node.default : null, nullable, kind: "json",
    };
    const types = real.map((v) => v.type);
    const one = real.length === 1 ? real[0] : null;
    if (one && (one.type === "number" || one.type === "integer")) {
      const integer = one.type === "integer";
      spec.step = integer ? 1 : 0.01;
      spec.min = one.minimum ?? (one.exclusiveMinimum !== undefined ? one.exclusiveMinimum + spec.step : undefined);
      spec.max = one.maximum ?? (one.exclusiveMaximum !== undefined ? one.exclusiveMaximum - spec.step : undefined);
      spec.exclusiveMin = one.exclusiveMinimum;
      spec.exclusiveMax = one.exclusiveMaximum;
      spec.integer = integer;
      if (LENGTH_FIELDS.has(name) && model.context_length && spec.max === undefined) spec.uiMax = model.context_length;
      const bounded = spec.min !== undefined && spec.max !== undefined && (!integer || spec.max - spec.min <= 1000);
      spec.kind = bounded ? "range" : "number";
    } else if (one && one.type === "boolean") {
      spec.kind = "bool";
    } else if (one && one.type === "string" && Array.isArray(one.enum)) {
      spec.kind = "select";
      spec.options = one.enum;
    } else if (one && one.type === "string") {
      spec.kind = "text";
      spec.maxLength = one.maxLength;
    } else if (one && one.type === "array" && resolve(one.items, defs).type === "integer") {
      spec.kind = "ints";
      spec.maxItems = one.maxItems;
    } else if (one && one.type === "array" && resolve(one.items, defs).type === "string") {
      spec.kind = "strings";
      spec.maxItems = one.maxItems;
    } else if (types.includes("string") && real.some((v) => v.type === "array")) {
      spec.kind = "strings"; // a string or a list of strings (stop)
      spec.maxItems = real.find((v) => v.type === "array").maxItems;
    } else {
      spec.kind = "json";
    }
    spec.group = !basic || basic.has(name) ? BASIC : ADVANCED;
    const order = raw["x-order"];
    spec.order = Number.isInteger(order) ? [0, order] : [1, index];
    specs.push(spec);
  }
  const rank = (s) => [s.group === BASIC ? 0 : 1, ...s.order];
  return specs.sort((a, b) => {
    const [x, y] = [rank(a), rank(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  });
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function isChanged(spec, value) {
  return value !== undefined && !same(value, spec.default);
}

/** The value as the request sends it (a single stop string goes as a string). */
export function requestValue(spec, value) {
  if (spec.kind === "strings" && Array.isArray(value) && value.length === 1) return value[0];
  return value;
}

/** {name: value} of the changed parameters, in display order. */
export function changedParams(specs, values) {
  const out = {};
  for (const spec of specs) {
    const value = values[spec.name];
    if (isChanged(spec, value)) out[spec.name] = requestValue(spec, value);
  }
  return out;
}

export function formatValue(spec, value) {
  if (value === null || value === undefined) return "none";
  if (spec.kind === "strings") return Array.isArray(value) ? value.map((s) => JSON.stringify(s)).join(", ") : JSON.stringify(value);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function num(v) {
  return typeof v === "number" && Number.isFinite(v) ? (Number.isInteger(v) ? String(v) : String(+v.toFixed(6))) : "";
}

function rangeText(spec) {
  const lo = spec.exclusiveMin !== undefined ? `> ${num(spec.exclusiveMin)}` : spec.min !== undefined ? `≥ ${num(spec.min)}` : "";
  const hi = spec.exclusiveMax !== undefined ? `< ${num(spec.exclusiveMax)}` : spec.max !== undefined ? `≤ ${num(spec.max)}` : "";
  if (spec.min !== undefined && spec.max !== undefined && spec.exclusiveMin === undefined && spec.exclusiveMax === undefined) {
    return `${num(spec.min)} to ${num(spec.max)}`;
  }
  return [lo, hi].filter(Boolean).join(", ");
}

function escapeLine(s) {
  return s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t");
}

function unescapeLine(s) {
  return s.replace(/\\(n|t|\\)/g, (_, c) => (c === "n" ? "\n" : c === "t" ? "\t" : "\\"));
}

/**
 * The parameter panel for one pane. `values` is mutated in place ({name: value}; absent means
 * the default); onChange() is called after every change; errors go to `errors` ({name: text}).
 * The Advanced group opens where `advancedOpen`, or where one of its values is set or invalid
 * (a value never hides); onAdvancedToggle(open) is told when the user opens or closes it.
 */
export function renderParams(specs, values, errors, { idPrefix, onChange, advancedOpen = false, onAdvancedToggle }) {
  const groups = new Map();
  for (const spec of specs) {
    if (!groups.has(spec.group)) groups.set(spec.group, []);
    groups.get(spec.group).push(spec);
  }
  const root = h("div", { class: "param-groups" });
  for (const [group, list] of groups) {
    const items = list.map((spec) => control(spec, values, errors, idPrefix, onChange));
    if (group === ADVANCED) {
      const open = advancedOpen || list.some((spec) => isChanged(spec, values[spec.name]) || errors[spec.name]);
      const details = h("details", { class: "param-group advanced", open }, h("summary", {}, group), items);
      details.addEventListener("toggle", () => onAdvancedToggle?.(details.open));
      root.append(details);
    } else {
      root.append(h("fieldset", { class: "param-group basic" }, h("legend", {}, group), items));
    }
  }
  if (!specs.length) {
    root.append(h("p", { class: "hint" }, "The parameters appear once the model list has loaded."));
  }
  return root;
}

function control(spec, values, errors, idPrefix, onChange) {
  const id = `${idPrefix}-${spec.name}`;
  const row = h("div", { class: `param kind-${spec.kind}`, dataset: { param: spec.name } });
  const errorEl = h("p", { class: "param-error", hidden: true, role: "alert" });
  const reset = h("button", {
    type: "button", class: "param-reset", title: `Reset to the default (${formatValue(spec, spec.default)})`,
    "aria-label": `Reset ${spec.name} to its default`,
  }, "Reset");
  const current = () => (values[spec.name] === undefined ? spec.default : values[spec.name]);
  let sync = () => {};

  const set = (value, error = "") => {
    if (error) errors[spec.name] = error; else delete errors[spec.name];
    if (value === undefined || same(value, spec.default)) delete values[spec.name];
    else values[spec.name] = value;
    refresh();
    onChange();
  };
  const refresh = () => {
    const changed = isChanged(spec, values[spec.name]);
    row.classList.toggle("changed", changed);
    reset.hidden = !changed;
    const error = errors[spec.name];
    errorEl.hidden = !error;
    errorEl.textContent = error || "";
    row.classList.toggle("invalid", Boolean(error));
  };
  reset.addEventListener("click", () => { delete errors[spec.name]; delete values[spec.name]; sync(); refresh(); onChange(); });

  const label = h("label", { class: "param-name", htmlFor: id }, spec.label);
  const head = h("div", { class: "param-head" }, label, reset);
  const help = [spec.help, spec.kind === "range" || spec.kind === "number" ? rangeText(spec) : "",
    `default ${formatValue(spec, spec.default)}`].filter(Boolean).join(" · ");
  const helpEl = h("p", { class: "param-help", id: `${id}-help` }, help);
  let body;

  if (spec.kind === "range" || spec.kind === "number") {
    const box = h("input", {
      type: "number", id, class: "num", step: spec.kind === "range" ? String(spec.step) : "1",
      "aria-describedby": `${id}-help`, inputmode: spec.integer ? "numeric" : "decimal",
    });
    if (spec.min !== undefined) box.min = String(spec.min);
    const max = spec.max ?? spec.uiMax;
    if (max !== undefined) box.max = String(max);
    if (spec.kind === "number") {
      box.placeholder = spec.default === null ? (spec.name === "seed" ? "random" : "server default") : num(spec.default);
    }
    const parse = (text, clamp) => {
      if (text.trim() === "") return { value: undefined };
      let v = Number(text);
      if (!Number.isFinite(v)) return { error: "Enter a number." };
      if (spec.integer && !Number.isInteger(v)) return { error: "Enter a whole number." };
      const lo = spec.exclusiveMin !== undefined ? spec.exclusiveMin : spec.min;
      const bad = (spec.exclusiveMin !== undefined && v <= spec.exclusiveMin) || (spec.min !== undefined && v < spec.min)
        || (spec.exclusiveMax !== undefined && v >= spec.exclusiveMax) || (spec.max !== undefined && v > spec.max);
      if (bad) {
        if (clamp && spec.kind === "range") v = Math.min(spec.max, Math.max(spec.min, v));
        else return { error: `Must be ${rangeText(spec)}.`, value: v, lo };
      }
      return { value: v };
    };
    if (spec.kind === "range") {
      const slider = h("input", {
        type: "range", class: "slider", min: String(spec.min), max: String(spec.max), step: String(spec.step),
        "aria-label": `${spec.name} slider`, "aria-describedby": `${id}-help`,
      });
      sync = () => { const v = current(); box.value = num(v); slider.value = String(v); };
      slider.addEventListener("input", () => { box.value = slider.value; set(Number(slider.value)); });
      box.addEventListener("input", () => {
        const r = parse(box.value, false);
        if (r.error) { errors[spec.name] = r.error; refresh(); onChange(); return; }
        if (r.value !== undefined) slider.value = String(r.value);
        set(r.value);
      });
      box.addEventListener("change", () => { const r = parse(box.value, true); if (!r.error) { set(r.value); sync(); } });
      head.append(box);
      body = slider;
    } else {
      sync = () => { const v = values[spec.name]; box.value = v === undefined ? (spec.default === null ? "" : num(spec.default)) : num(v); };
      box.addEventListener("input", () => {
        const r = parse(box.value, false);
        if (r.error) { errors[spec.name] = r.error; refresh(); onChange(); return; }
        set(r.value === undefined ? undefined : r.value);
      });
      const extras = [];
      if (spec.name === "seed") {
        extras.push(h("button", {
          type: "button", class: "btn ghost small", title: "A random seed",
          onclick: () => { const v = Math.floor(Math.random() * 2 ** 31); box.value = String(v); set(v); },
        }, "Random"));
      }
      body = h("div", { class: "num-row" }, box, extras);
    }
  } else if (spec.kind === "bool") {
    const box = h("input", { type: "checkbox", id, class: "switch", role: "switch", "aria-describedby": `${id}-help` });
    sync = () => { box.checked = Boolean(current()); };
    box.addEventListener("change", () => set(box.checked));
    head.insertBefore(box, reset);
    body = null;
  } else if (spec.kind === "select") {
    const select = h("select", { id, class: "select small", "aria-describedby": `${id}-help` },
      spec.options.map((o) => h("option", { value: o }, o)));
    sync = () => { select.value = current() ?? ""; };
    select.addEventListener("change", () => set(select.value));
    body = select;
  } else if (spec.kind === "strings") {
    const area = h("textarea", {
      id, class: "textarea small", rows: 2, spellcheck: false, "aria-describedby": `${id}-help`,
      placeholder: `One per line${spec.maxItems ? `, up to ${spec.maxItems}` : ""} (\\n for a newline)`,
    });
    sync = () => {
      const v = current();
      area.value = v === null || v === undefined ? "" : (Array.isArray(v) ? v : [v]).map(escapeLine).join("\n");
    };
    area.addEventListener("input", () => {
      const list = area.value.split("\n").filter((line) => line !== "").map(unescapeLine);
      if (spec.maxItems && list.length > spec.maxItems) { set(list, `At most ${spec.maxItems} entries.`); return; }
      set(list.length ? list : undefined);
    });
    body = area;
  } else if (spec.kind === "ints") {
    const input = h("input", { id, class: "input small", type: "text", placeholder: "e.g. 2, 13", "aria-describedby": `${id}-help` });
    sync = () => { const v = current(); input.value = Array.isArray(v) ? v.join(", ") : ""; };
    input.addEventListener("input", () => {
      const parts = input.value.split(/[\s,]+/).filter(Boolean);
      if (!parts.length) { set(undefined); return; }
      const ids = parts.map(Number);
      if (ids.some((n) => !Number.isInteger(n) || n < 0)) { set(values[spec.name], "Enter whole numbers separated by commas."); return; }
      set(ids);
    });
    body = input;
  } else if (spec.kind === "text") {
    const input = h("input", { id, class: "input small", type: "text", "aria-describedby": `${id}-help` });
    if (spec.maxLength) input.maxLength = spec.maxLength;
    sync = () => { const v = current(); input.value = v ?? ""; };
    input.addEventListener("input", () => set(input.value === "" ? undefined : input.value));
    body = input;
  } else {
    const area = h("textarea", {
      id, class: "textarea small mono", rows: 2, spellcheck: false, placeholder: "JSON, e.g. {\"1234\": -100}",
      "aria-describedby": `${id}-help`,
    });
    sync = () => { const v = current(); area.value = v === null || v === undefined ? "" : JSON.stringify(v); };
    area.addEventListener("input", () => {
      if (!area.value.trim()) { set(undefined); return; }
      try { set(JSON.parse(area.value)); } catch { set(values[spec.name], "Not valid JSON."); }
    });
    body = area;
  }
  sync();
  row.append(head, body || "", helpEl, errorEl);
  refresh();
  return row;
}
