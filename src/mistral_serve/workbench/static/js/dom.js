// Building DOM without HTML strings: every text goes in as a text node, never through innerHTML.

const PROPS = new Set(["value", "checked", "disabled", "hidden", "selected", "type", "min", "max", "step",
  "placeholder", "rows", "title", "href", "id", "name", "htmlFor", "tabIndex", "readOnly", "spellcheck"]);

/** h("button", {class: "btn", onclick: fn}, "Label", child, ...) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (PROPS.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Copy text to the clipboard; falls back to a hidden textarea where the Clipboard API is absent
 * (plain http on a LAN address is not a secure context). */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch { /* fall through */ }
  const area = h("textarea", { class: "visually-hidden", readOnly: true });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch { ok = false; }
  area.remove();
  return ok;
}

let toastTimer = 0;
export function toast(message) {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 1800);
}

export function formatInt(n) {
  return Number(n).toLocaleString("en-US");
}

/** A ReadableError as a box: its title, detail and hint, then `extra` (a button, say). */
export function errorBox(err, extra) {
  return h("div", { class: "error-box", role: "alert" },
    h("strong", { class: "error-title" }, err.title),
    err.detail ? h("p", { class: "error-detail" }, err.detail) : null,
    err.hint ? h("p", { class: "error-hint" }, err.hint) : null,
    extra || null);
}
