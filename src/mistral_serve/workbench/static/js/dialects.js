// The API dialects the server speaks: the workbench's request (an OpenAI chat-completions body, as
// paneRequest builds it) in the form of each one. Pure functions over plain data, one per dialect:
// each returns {body, leftOut, adjusted}: the dialect's body, the names of the fields it has no
// place for (never dropped silently: the API tab lists them under the snippets), and sentences on
// values it had to change. The simple field renames come from snippets.json, which the model page
// (model_page.py) reads too.

import TEMPLATES from "./snippets.json" with { type: "json" };

/** {id: {title, path, ...}} of the dialects, in the order the API tab offers them. */
export const DIALECTS = TEMPLATES.dialects;
export const DIALECT_IDS = Object.keys(DIALECTS);
export const DEFAULT_DIALECT = "chat";

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** The text of a message's content: a string, text parts, or null. */
export function textOf(content) {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (p && typeof p.text === "string" ? p.text : "")).join("");
  return String(content);
}

/** out[a][b] = value for the path "a.b". */
function setPath(out, path, value) {
  const names = path.split(".");
  let node = out;
  for (const name of names.slice(0, -1)) {
    if (!isObject(node[name])) node[name] = {};
    node = node[name];
  }
  node[names[names.length - 1]] = value;
}

const asList = (v) => (Array.isArray(v) ? v : [v]);

/** A call's arguments as a JSON object (dialects that take them as objects), or null. */
function argumentsObject(text) {
  try {
    const value = JSON.parse(text);
    return isObject(value) ? value : null;
  } catch {
    return null;
  }
}

/** The system prompt (every system or developer message, joined) and the other messages. */
function splitSystem(messages) {
  const system = [];
  const rest = [];
  for (const m of messages) {
    if (m.role === "system" || m.role === "developer") system.push(textOf(m.content));
    else rest.push(m);
  }
  return { system: system.filter(Boolean).join("\n\n"), rest };
}

/**
 * The shared walk: the chat body's fields in order, each renamed by the dialect's table
 * (snippets.json), or given to `handlers[name]` (which writes into `out`), or added to `leftOut`.
 * `adapt(name, value)` may change a renamed field's value (undefined: nothing to send).
 */
function translate(dialect, chat, out, leftOut, handlers, adapt = (_, v) => v) {
  const fields = DIALECTS[dialect].fields || {};
  for (const [name, value] of Object.entries(chat)) {
    if (value === undefined || name === "model") continue;
    if (handlers[name]) handlers[name](value);
    else if (fields[name]) {
      const v = adapt(name, value);
      if (v !== undefined) setPath(out, fields[name], v);
    } else leftOut.push(name);
  }
}

// stream_options asks for the usage at the end of a stream: these dialects always send it.
const ALWAYS_USAGE = () => {};

// ---- OpenAI Chat Completions --------------------------------------------------------------------

/** The chat body as it is: this is the workbench's own dialect. */
export function chatBody(chat) {
  return { body: chat, leftOut: [], adjusted: [] };
}

// ---- OpenAI Responses ---------------------------------------------------------------------------

/** Chat messages as Responses input items: tool calls and results become function_call and
 * function_call_output items; a single user message is the input string. */
export function responsesInput(messages) {
  const items = [];
  for (const m of messages) {
    if (m.role === "tool") {
      items.push({ type: "function_call_output", call_id: m.tool_call_id, output: textOf(m.content) });
    } else if (Array.isArray(m.tool_calls) && m.tool_calls.length) {
      if (textOf(m.content)) items.push({ role: "assistant", content: textOf(m.content) });
      for (const call of m.tool_calls) {
        const { name, arguments: args } = call.function;
        items.push({ type: "function_call", call_id: call.id, name, arguments: args });
      }
    } else {
      items.push({ role: m.role, content: textOf(m.content) });
    }
  }
  if (items.length === 1 && items[0].role === "user") return items[0].content;
  return items;
}

export function responsesBody(chat) {
  const { system, rest } = splitSystem(chat.messages || []);
  const out = { model: chat.model };
  if (system) out.instructions = system;
  const leftOut = [];
  translate("responses", chat, out, leftOut, {
    messages: () => { out.input = responsesInput(rest); },
    response_format: (format) => {
      if (format.type === "json_object") out.text = { format: { type: "json_object" } };
      else if (format.type === "json_schema") {
        const { name, schema, strict, description } = format.json_schema || {};
        out.text = { format: {
          type: "json_schema", name, ...(description ? { description } : {}), schema,
          ...(strict !== undefined && strict !== null ? { strict } : {}),
        } };
      }
    },
    tools: (tools) => {
      // Responses takes parameters and strict on every function (and strict defaults to true there).
      out.tools = tools.map((t) => ({
        type: "function", name: t.function.name,
        ...(t.function.description ? { description: t.function.description } : {}),
        parameters: t.function.parameters ?? { type: "object", properties: {} },
        strict: t.function.strict ?? false,
      }));
    },
    tool_choice: (choice) => {
      out.tool_choice = isObject(choice) ? { type: "function", name: choice.function.name } : choice;
    },
    parallel_tool_calls: (value) => { out.parallel_tool_calls = value; },
    stream_options: ALWAYS_USAGE,
  });
  return { body: out, leftOut, adjusted: [] };
}

// ---- Anthropic Messages -------------------------------------------------------------------------

const ANTHROPIC_MAX_TEMPERATURE = 1;

/** Chat messages as Anthropic messages: assistant tool calls become tool_use blocks, tool results
 * tool_result blocks in the user message that follows (with that user's text, if any). */
export function anthropicMessages(messages, adjusted = []) {
  const out = [];
  const add = (role, block) => {
    const last = out[out.length - 1];
    if (last && last.role === role) {
      if (typeof last.content === "string") last.content = [{ type: "text", text: last.content }];
      last.content.push(block);
    } else {
      out.push({ role, content: block.type === "text" ? block.text : [block] });
    }
  };
  for (const m of messages) {
    if (m.role === "tool") {
      add("user", { type: "tool_result", tool_use_id: m.tool_call_id, content: textOf(m.content) });
    } else if (Array.isArray(m.tool_calls) && m.tool_calls.length) {
      const blocks = [];
      if (textOf(m.content)) blocks.push({ type: "text", text: textOf(m.content) });
      for (const call of m.tool_calls) {
        let input = argumentsObject(call.function.arguments);
        if (!input) {
          input = {};
          adjusted.push(`The arguments of the call ${call.id} are not a JSON object: they go as {}.`);
        }
        blocks.push({ type: "tool_use", id: call.id, name: call.function.name, input });
      }
      out.push({ role: "assistant", content: blocks });
    } else {
      add(m.role === "assistant" ? "assistant" : "user", { type: "text", text: textOf(m.content) });
    }
  }
  return out;
}

/** Anthropic's tool_choice for the chat tool_choice and parallel_tool_calls (undefined: the default). */
export function anthropicToolChoice(choice, parallel) {
  let out;
  if (choice === "none") return { type: "none" };
  if (choice === "required") out = { type: "any" };
  else if (isObject(choice)) out = { type: "tool", name: choice.function.name };
  else if (choice === "auto") out = { type: "auto" };
  if (parallel === false) out = { ...(out || { type: "auto" }), disable_parallel_tool_use: true };
  return out;
}

export function anthropicBody(chat) {
  const { system, rest } = splitSystem(chat.messages || []);
  const adjusted = [];
  const defaultMax = DIALECTS.anthropic.default_max_tokens;
  // max_tokens is required: it comes first, with the default until the settings give one.
  const out = { model: chat.model, max_tokens: defaultMax };
  if (system) out.system = system;
  const tools = Array.isArray(chat.tools) && chat.tools.length ? chat.tools : null;
  const leftOut = [];
  translate("anthropic", chat, out, leftOut, {
    messages: () => { out.messages = anthropicMessages(rest, adjusted); },
    tools: () => {
      if (!tools) return;
      out.tools = tools.map((t) => ({
        name: t.function.name, ...(t.function.description ? { description: t.function.description } : {}),
        input_schema: t.function.parameters ?? { type: "object", properties: {} },
      }));
      const strict = tools.some((t) => t.function.strict !== undefined && t.function.strict !== null);
      if (strict) leftOut.push("strict (of the tools)");
      const choice = anthropicToolChoice(chat.tool_choice, chat.parallel_tool_calls);
      if (choice) out.tool_choice = choice;
    },
    tool_choice: () => {}, // with the tools
    parallel_tool_calls: () => {},
    stream_options: ALWAYS_USAGE,
  }, (name, value) => {
    if (name === "stop") return asList(value);
    if (name === "top_k") return value > 0 ? value : undefined; // 0 and -1 are off: Anthropic's default
    if (name === "temperature" && value > ANTHROPIC_MAX_TEMPERATURE) {
      adjusted.push(`temperature ${value} goes as ${ANTHROPIC_MAX_TEMPERATURE}, Anthropic's maximum.`);
      return ANTHROPIC_MAX_TEMPERATURE;
    }
    return value;
  });
  if (chat.max_tokens === undefined && chat.max_completion_tokens === undefined) {
    adjusted.push(`max_tokens is required here: ${defaultMax}, as the settings set none (set max_tokens to change it).`);
  }
  return { body: out, leftOut, adjusted };
}

// ---- Ollama -------------------------------------------------------------------------------------

/** Chat messages as Ollama messages: calls with their arguments as objects, results as tool
 * messages named by their tool (Ollama's messages carry no call ids). */
export function ollamaMessages(messages, adjusted = []) {
  const names = new Map();
  const out = [];
  for (const m of messages) {
    if (m.role === "tool") {
      out.push({ role: "tool", content: textOf(m.content), tool_name: names.get(m.tool_call_id) || "" });
    } else if (Array.isArray(m.tool_calls) && m.tool_calls.length) {
      out.push({
        role: "assistant", content: textOf(m.content),
        tool_calls: m.tool_calls.map((call) => {
          names.set(call.id, call.function.name);
          let args = argumentsObject(call.function.arguments);
          if (!args) {
            args = {};
            adjusted.push(`The arguments of the call ${call.id} are not a JSON object: they go as {}.`);
          }
          return { function: { name: call.function.name, arguments: args } };
        }),
      });
    } else {
      out.push({ role: m.role === "developer" ? "system" : m.role, content: textOf(m.content) });
    }
  }
  return out;
}

export function ollamaBody(chat) {
  const adjusted = [];
  const out = { model: chat.model };
  const leftOut = [];
  translate("ollama", chat, out, leftOut, {
    messages: (messages) => { out.messages = ollamaMessages(messages, adjusted); },
    response_format: (format) => {
      if (format.type === "json_object") out.format = "json";
      else if (format.type === "json_schema") out.format = (format.json_schema || {}).schema || {};
    },
    tools: (tools) => { if (tools.length) out.tools = tools; },
    tool_choice: (choice) => { if (choice !== "auto") leftOut.push("tool_choice"); },
    parallel_tool_calls: (value) => { if (value === false) leftOut.push("parallel_tool_calls"); },
    stream_options: ALWAYS_USAGE,
  }, (name, value) => (name === "stop" ? asList(value) : value));
  // Ollama streams unless told not to: the call always says which.
  if (out.stream === undefined) out.stream = false;
  return { body: out, leftOut, adjusted };
}

// ---- all of them --------------------------------------------------------------------------------

const CONVERT = { chat: chatBody, responses: responsesBody, anthropic: anthropicBody, ollama: ollamaBody };

/** The dialect's id, or the default for an unknown one (an old stored value, say). */
export function dialectId(id) {
  return Object.hasOwn(CONVERT, id) && Object.hasOwn(DIALECTS, id) ? id : DEFAULT_DIALECT;
}

/** The chat body `chat` in dialect `id`: {body, leftOut, adjusted}. */
export function toDialect(id, chat) {
  return CONVERT[dialectId(id)](chat);
}

function list(names) {
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

/** The note under the snippets: what this dialect's call leaves out or changes ("" when nothing). */
export function leftOutNote(id, { leftOut = [], adjusted = [] }) {
  const title = DIALECTS[dialectId(id)].title;
  const parts = [];
  if (leftOut.length) {
    parts.push(`Left out: ${list(leftOut)}. ${title} has no field for ${leftOut.length > 1 ? "them" : "it"}, `
      + "so this call's answers can differ from the workbench's.");
  }
  return [...parts, ...adjusted].join(" ");
}
