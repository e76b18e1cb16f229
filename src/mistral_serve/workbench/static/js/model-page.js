// The model page works without JavaScript; this adds tab switching and copy buttons.

import { copyText } from "./dom.js";

function select(tab) {
  const list = tab.closest("[role=tablist]");
  const root = list.parentElement;
  for (const other of list.querySelectorAll("[role=tab]")) {
    const active = other === tab;
    other.setAttribute("aria-selected", String(active));
    other.tabIndex = active ? 0 : -1;
    const panel = document.getElementById(other.getAttribute("aria-controls"));
    if (panel && panel.parentElement === root) panel.toggleAttribute("data-active", active);
  }
}

for (const list of document.querySelectorAll("[data-tabs] > [role=tablist]")) {
  list.hidden = false;
  const tabs = [...list.querySelectorAll("[role=tab]")];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (ev) => {
      const step = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      ev.preventDefault();
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      select(next);
    });
  });
}

for (const button of document.querySelectorAll("[data-copy]")) {
  button.hidden = false;
  button.addEventListener("click", async () => {
    const code = button.closest(".code").querySelector("pre").textContent;
    const ok = await copyText(code);
    button.textContent = ok ? "Copied ✓" : "Copy failed";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
}

document.documentElement.classList.add("js");
