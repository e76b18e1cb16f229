// Output format (text, JSON object, JSON schema) and tools: settings shared by every pane, kept in
// this browser, checked here before anything is sent. structuredFields() adds them to a request.

import { $, h } from "./dom.js";

const STORAGE = "mistral-serve.structured";
const NAME_RE = /^[a-zA-Z0-9_-]{1,64}$/;
const NAME_RULE = "1 to 64 letters, digits, _ or -";

export const EXAMPLE_SCHEMA_NAME = "person";
export const EXAMPLE_SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 40 },
    age: { type: "integer", minimum: 0, maximum: 120 },
    languages: { type: "array", items: { type: "string", maxLength: 20 }, maxItems: 3 },
  },
  required: ["name", "age", "languages"],
  additionalProperties: false,
};
export const EXAMPLE_TOOLS = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city.",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "The city, e.g. Paris" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
      },
      required: ["city", "unit"],
    },
  },
}];

const FORMAT_HINTS = {
  text: "The model answers in free text.",
  json_object: "The answer is always one JSON object (response_format json_object).",
  json_schema: "The answer always matches this JSON Schema: the server constrains every token.",
};
const FORMAT_LABELS = { text: "Text", json_object: "JSON object", json_schema: "JSON schema" };

const pretty = (value) => JSON.stringify(value, null, 2);
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

const s = {
  format: "text",
  schemaName: EXAMPLE_SCHEMA_NAME,
  schemaText: pretty(EXAMPLE_SCHEMA),
  toolsText: "",
  toolChoice: "auto", // auto | none | required | fn:NAME
  parallel: true,
  // Derived: the last valid values (the API tab shows them while an editor holds an error).
  schema: EXAMPLE_SCHEMA,
  tools: [],
  names: [],
  errors: { name: "", schema: "", tools: "" },
};
let onChange = () => {};

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE) || "null");
    if (!isObject(saved)) return;
    if (FORMAT_LABELS[saved.format]) s.format = saved.format;
    for (const key of ["schemaName", "schemaText", "toolsText", "toolChoice"]) {
      if (typeof saved[key] === "string") s[key] = saved[key];
    }
    if (typeof saved.parallel === "boolean") s.parallel = saved.parallel;
  } catch { /* private mode, or an old value: start from the defaults */ }
}

function save() {
  const { format, schemaName, schemaText, toolsText, toolChoice, parallel } = s;
  try { localStorage.setItem(STORAGE, JSON.stringify({ format, schemaName, schemaText, toolsText, toolChoice, parallel })); }
  catch { /* private mode */ }
}

function jsonError(err) {
  return `Not valid JSON: ${String(err && err.message ? err.message : err).replace(/^JSON\.parse: /, "")}`;
}

function checkName() {
  s.errors.name = NAME_RE.test(s.schemaName) ? "" : `The name must be ${NAME_RULE}.`;
}

function checkSchema() {
  s.errors.schema = "";
  if (!s.schemaText.trim()) { s.errors.schema = "Enter a JSON Schema, e.g. {\"type\": \"object\"}."; return; }
  let value;
  try { value = JSON.parse(s.schemaText); } catch (err) { s.errors.schema = jsonError(err); return; }
  if (!isObject(value)) { s.errors.schema = "The schema must be a JSON object, e.g. {\"type\": \"object\"}."; return; }
  s.schema = value;
}

function checkTools() {
  s.errors.tools = "";
  if (!s.toolsText.trim()) { s.tools = []; s.names = []; return; }
  let value;
  try { value = JSON.parse(s.toolsText); } catch (err) { s.errors.tools = jsonError(err); return; }
  if (!Array.isArray(value)) {
    s.errors.tools = "Tools must be a JSON array: [{\"type\": \"function\", \"function\": {…}}].";
    return;
  }
  const names = [];
  for (const [i, tool] of value.entries()) {
    const where = value.length > 1 ? `Tool ${i + 1}` : "The tool";
    if (!isObject(tool) || tool.type !== "function" || !isObject(tool.function)) {
      s.errors.tools = `${where} must look like {"type": "function", "function": {"name": …}}.`;
      return;
    }
    const name = tool.function.name;
    if (typeof name !== "string" || !NAME_RE.test(name)) {
      s.errors.tools = `${where}: function.name must be ${NAME_RULE}.`;
      return;
    }
    if (names.includes(name)) { s.errors.tools = `${where}: the name ${name} is already used.`; return; }
    if (tool.function.parameters !== undefined && !isObject(tool.function.parameters)) {
      s.errors.tools = `${where}: function.parameters must be a JSON Schema object.`;
      return;
    }
    names.push(name);
  }
  s.tools = value;
  s.names = names;
}

/** The request fields for the current settings. After tool results, a forced choice (required or a
 * named function) goes back to auto, so that the model can answer rather than call again. */
export function structuredFields({ afterResults = false } = {}) {
  const out = {};
  if (s.format === "json_object") out.response_format = { type: "json_object" };
  if (s.format === "json_schema") {
    out.response_format = { type: "json_schema", json_schema: { name: s.schemaName, schema: s.schema, strict: true } };
  }
  if (s.tools.length) {
    out.tools = s.tools;
    const choice = afterResults && s.toolChoice !== "none" ? "auto" : s.toolChoice;
    if (choice === "none" || choice === "required") out.tool_choice = choice;
    else if (choice.startsWith("fn:")) out.tool_choice = { type: "function", function: { name: choice.slice(3) } };
    if (!s.parallel) out.parallel_tool_calls = false;
  }
  return out;
}

function conflict() {
  if (s.format === "text" || !s.tools.length || s.toolChoice === "none") return "";
  return "JSON output and tool calls cannot be combined: set the tool choice to none, or the output format to Text.";
}

/** The first problem that blocks sending, {text, field}, or null. */
export function structuredProblem() {
  if (s.format === "json_schema" && s.errors.name) return { text: `Schema name: ${s.errors.name}`, field: "#schema-name" };
  if (s.format === "json_schema" && s.errors.schema) return { text: `JSON schema: ${s.errors.schema}`, field: "#schema-text" };
  if (s.errors.tools) return { text: `Tools: ${s.errors.tools}`, field: "#tools-text" };
  const clash = conflict();
  if (clash) return { text: clash, field: "#tool-choice" };
  return null;
}

/** Short labels of what is on, for the toolbar: [{text, title, field}]. */
export function structuredChips() {
  const chips = [];
  if (s.format === "json_object") chips.push({ text: "JSON object", title: "Output format: JSON object", field: "#format-options input:checked" });
  if (s.format === "json_schema") {
    chips.push({ text: `JSON schema: ${s.schemaName || "?"}`, title: "Output format: JSON schema", field: "#schema-text" });
  }
  if (s.tools.length) {
    const choice = s.toolChoice.startsWith("fn:") ? s.toolChoice.slice(3) : s.toolChoice;
    chips.push({
      text: `${s.tools.length} tool${s.tools.length > 1 ? "s" : ""} · ${choice}`,
      title: `Tools: ${s.names.join(", ")}; tool choice ${choice}`, field: "#tools-text",
    });
  }
  return chips;
}

// ---- the controls ------------------------------------------------------------------------------

function showError(input, errorEl, text) {
  errorEl.textContent = text;
  errorEl.hidden = !text;
  if (text) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

function renderChoice() {
  const select = $("#tool-choice");
  const known = s.names;
  if (s.toolChoice.startsWith("fn:") && !known.includes(s.toolChoice.slice(3)) && !s.errors.tools) s.toolChoice = "auto";
  // While the tools hold an error, the options stay as they were.
  if (!s.errors.tools) {
    select.replaceChildren(
      h("option", { value: "auto" }, "auto"),
      h("option", { value: "none" }, "none"),
      h("option", { value: "required" }, "required"),
      ...known.map((name) => h("option", { value: `fn:${name}` }, `function: ${name}`)));
  }
  select.value = s.toolChoice;
  const off = !s.tools.length;
  select.disabled = off;
  $("#parallel-calls").disabled = off;
  $("#parallel-calls").checked = s.parallel;
  $("#tool-options").classList.toggle("off", off);
}

function renderSettings() {
  for (const radio of document.querySelectorAll("#format-options input")) radio.checked = radio.value === s.format;
  $("#format-hint").textContent = FORMAT_HINTS[s.format];
  $("#schema-editor").hidden = s.format !== "json_schema";
  showError($("#schema-name"), $("#schema-name-error"), s.errors.name);
  showError($("#schema-text"), $("#schema-error"), s.errors.schema);
  showError($("#tools-text"), $("#tools-error"), s.errors.tools);
  renderChoice();
  const clash = conflict();
  $("#tools-conflict").textContent = clash;
  $("#tools-conflict").hidden = !clash;
}

function changed() {
  save();
  renderSettings();
  onChange();
}

export function initStructured({ onChange: callback }) {
  onChange = callback;
  load();
  checkName();
  checkSchema();
  checkTools();

  const name = $("#schema-name");
  const schema = $("#schema-text");
  const tools = $("#tools-text");
  name.value = s.schemaName;
  schema.value = s.schemaText;
  tools.value = s.toolsText;

  for (const radio of document.querySelectorAll("#format-options input")) {
    radio.addEventListener("change", () => { if (radio.checked) { s.format = radio.value; changed(); } });
  }
  name.addEventListener("input", () => { s.schemaName = name.value.trim(); checkName(); changed(); });
  schema.addEventListener("input", () => { s.schemaText = schema.value; checkSchema(); changed(); });
  tools.addEventListener("input", () => { s.toolsText = tools.value; checkTools(); changed(); });
  $("#schema-format").addEventListener("click", () => {
    if (s.errors.schema) { schema.focus(); return; }
    schema.value = s.schemaText = pretty(s.schema);
    changed();
  });
  $("#schema-example").addEventListener("click", () => {
    name.value = s.schemaName = EXAMPLE_SCHEMA_NAME;
    schema.value = s.schemaText = pretty(EXAMPLE_SCHEMA);
    checkName();
    checkSchema();
    changed();
  });
  $("#tools-format").addEventListener("click", () => {
    if (s.errors.tools || !s.tools.length) { tools.focus(); return; }
    tools.value = s.toolsText = pretty(s.tools);
    changed();
  });
  $("#tools-example").addEventListener("click", () => {
    tools.value = s.toolsText = pretty(EXAMPLE_TOOLS);
    checkTools();
    changed();
  });
  $("#tool-choice").addEventListener("change", (ev) => { s.toolChoice = ev.target.value; changed(); });
  $("#parallel-calls").addEventListener("change", (ev) => { s.parallel = ev.target.checked; changed(); });
  renderSettings();
}
