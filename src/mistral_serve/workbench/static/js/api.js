// Talking to the server: the model list, streamed chat completions, and readable errors.

export const CHAT_PATH = "/api/ai/chat/completions";
export const MODELS_PATH = "/api/ai/models";

/** An error to show a person: a short title, a sentence of detail, an optional hint. */
export class ReadableError extends Error {
  constructor(title, detail = "", { status = 0, hint = "" } = {}) {
    super(detail ? `${title}: ${detail}` : title);
    this.name = "ReadableError";
    this.title = title;
    this.detail = detail;
    this.status = status;
    this.hint = hint;
  }
}

export function headers(key, json = true) {
  const out = {};
  if (json) out["Content-Type"] = "application/json";
  if (key) out["Authorization"] = `Bearer ${key}`;
  return out;
}

/** The message inside an error body, whichever shape it has (hub, OpenAI, FastAPI); never the JSON itself. */
function detailOf(body) {
  if (!body || typeof body !== "object") return "";
  const err = body.error;
  if (err && typeof err === "object") {
    for (const field of ["detail", "message", "title"]) {
      if (typeof err[field] === "string" && err[field]) return err[field];
    }
  }
  if (typeof err === "string") return err;
  if (typeof body.detail === "string") return body.detail;
  if (typeof body.message === "string") return body.message;
  return "";
}

export function explain(status, detail, retryAfter) {
  const text = detail || "";
  switch (status) {
    case 401:
      return new ReadableError(/missing/i.test(text) ? "API key needed" : "API key rejected",
        text || "The server did not accept the API key.",
        { status, hint: "Enter a valid key in the API key field of the settings." });
    case 400:
      if (/context/i.test(text)) {
        return new ReadableError("Too long for the model's context", text,
          { status, hint: "Lower max_tokens, shorten the conversation or clear it." });
      }
      if (/response_format/i.test(text)) {
        return new ReadableError("The server refused the output format", text,
          { status, hint: "Check the output format and its JSON schema in the settings." });
      }
      if (/tool/i.test(text)) {
        return new ReadableError("The server refused the tools", text,
          { status, hint: "Check the tools and the tool choice in the settings." });
      }
      return new ReadableError("The server refused the request", text || "Bad request.", { status });
    case 404:
      return new ReadableError("Not found", text || "The server does not know this model or path.", { status });
    case 413:
      return new ReadableError("Request too large", text, { status, hint: "Shorten the conversation." });
    case 429:
      return new ReadableError("Server busy", text || "Too many requests are running.",
        { status, hint: retryAfter ? `Try again in ${retryAfter} s.` : "Try again shortly." });
    case 503:
      return new ReadableError("Model not ready", text || "The server is loading or shutting down.",
        { status, hint: "Try again in a few seconds." });
    default:
      if (status >= 500) {
        return new ReadableError("Server error", text || `The server answered ${status}.`, { status });
      }
      return new ReadableError(`Request failed (HTTP ${status})`, text, { status });
  }
}

export async function errorFromResponse(response) {
  let detail = "";
  try {
    const type = response.headers.get("content-type") || "";
    if (type.includes("json")) detail = detailOf(await response.json());
  } catch { /* not JSON: keep the status only */ }
  return explain(response.status, detail || response.statusText, response.headers.get("retry-after"));
}

export function networkError(err) {
  return new ReadableError("Can't reach the server",
    `The connection to ${location.origin} failed${err && err.message ? ` (${err.message})` : ""}.`,
    { hint: "Check that mistral-serve is running, then try again." });
}

export function asReadable(err) {
  if (err instanceof ReadableError) return err;
  if (err instanceof TypeError) return networkError(err);
  return new ReadableError("Something went wrong", err && err.message ? String(err.message) : String(err));
}

export async function fetchModels(key, signal) {
  let response;
  try {
    response = await fetch(MODELS_PATH, { headers: headers(key, false), signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw networkError(err);
  }
  if (!response.ok) throw await errorFromResponse(response);
  const body = await response.json();
  return Array.isArray(body.data) ? body.data : [];
}

/** Parse a server-sent-event stream; yields the JSON of each `data:` event until `[DONE]`. */
export async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // Normalise line ends, keeping a trailing \r that may be half of a \r\n.
      const keep = buffer.endsWith("\r") ? "\r" : "";
      buffer = (keep ? buffer.slice(0, -1) : buffer).replace(/\r\n?/g, "\n") + keep;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        if (data === "[DONE]") { yield { done: true }; return; }
        let event;
        try { event = JSON.parse(data); } catch { continue; }
        yield event;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Stream one chat completion. Callbacks: onText(delta), onToolCalls(deltas) with the delta's
 * tool_calls list (fragments to join by index), onFinish(reason), onUsage(usage).
 * Resolves when the stream ends; rejects with a ReadableError, or an AbortError when stopped.
 */
export async function streamChat({ body, key, signal, onText, onToolCalls, onFinish, onUsage }) {
  let response;
  try {
    response = await fetch(CHAT_PATH, { method: "POST", headers: headers(key), body: JSON.stringify(body), signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw networkError(err);
  }
  if (!response.ok) throw await errorFromResponse(response);
  let finished = false;
  try {
    for await (const event of readEvents(response)) {
      if (event.done) { finished = true; break; }
      if (event.error) {
        const detail = detailOf(event);
        throw new ReadableError(/context/i.test(detail) ? "Too long for the model's context" : "Generation failed", detail);
      }
      if (event.usage) onUsage?.(event.usage);
      for (const choice of event.choices || []) {
        const text = choice.delta && choice.delta.content;
        if (text) onText?.(text);
        const calls = choice.delta && choice.delta.tool_calls;
        if (Array.isArray(calls) && calls.length) onToolCalls?.(calls);
        if (choice.finish_reason) onFinish?.(choice.finish_reason);
      }
    }
  } catch (err) {
    if (err.name === "AbortError" || err instanceof ReadableError) throw err;
    if (signal?.aborted) { const abort = new DOMException("stopped", "AbortError"); throw abort; }
    throw new ReadableError("The stream broke off", err && err.message ? err.message : "", {
      hint: "The connection closed before the answer was complete." });
  }
  if (!finished) {
    throw new ReadableError("The stream broke off", "The server closed the connection before the end of the answer.");
  }
}
