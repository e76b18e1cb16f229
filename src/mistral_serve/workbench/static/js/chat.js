// Chatting: sending a turn to every pane, streaming the answers in, regenerating, going on after
// tool results, stopping and clearing.

import { $, toast } from "./dom.js";
import { asReadable, streamChat } from "./api.js";
import { buildMessages, newAnswer, parentOf } from "./conversation.js";
import { letter, newId, paint, paneRequest, render, state } from "./store.js";
import { openParams, paramProblem } from "./panes.js";
import { structuredProblem } from "./structured.js";
import { addToolCallDeltas } from "./toolcalls.js";

/** Answer `turn` in `pane`; with `parent` (an answer whose tool results are in), go on after it. */
async function generate(pane, turn, parent = null) {
  const index = state.turns.indexOf(turn);
  const answer = newAnswer(newId(), pane.modelId, performance.now());
  if (parent) parent.next = answer;
  else turn.answers[pane.id] = answer;
  const body = paneRequest(pane, buildMessages(state, pane.id, index, turn.user, parent), { afterResults: Boolean(parent) });
  const controller = new AbortController();
  pane.controller = controller;
  state.running += 1;
  render({ messages: pane });
  let frame = 0;
  const onFrame = () => {
    frame = 0;
    paint(answer, turn, pane);
  };
  try {
    await streamChat({
      body, key: state.key, signal: controller.signal,
      onText: (text) => {
        if (!answer.tFirst) answer.tFirst = performance.now();
        answer.text += text;
        answer.chunks += 1;
        answer.view?.textNode.appendData(text);
        if (!frame) frame = requestAnimationFrame(onFrame);
      },
      onToolCalls: (deltas) => {
        if (!answer.tFirst) answer.tFirst = performance.now();
        addToolCallDeltas(answer.toolCalls, deltas);
        if (!frame) frame = requestAnimationFrame(onFrame);
      },
      onFinish: (reason) => { answer.finish = reason; },
      onUsage: (usage) => { answer.usage = usage; },
    });
    answer.status = "done";
  } catch (err) {
    if (err.name === "AbortError") answer.status = "stopped";
    else { answer.status = "error"; answer.error = asReadable(err); }
  } finally {
    if (frame) cancelAnimationFrame(frame);
    answer.tEnd = performance.now();
    if (pane.controller === controller) pane.controller = null;
    state.running -= 1;
    paint(answer, turn, pane);
    // The last answer in: every pane again, with its buttons back.
    render({ messages: !state.running });
  }
}

/** Answer the turn again (in `pane`, or, after tool results, only the answer after them). */
export function regenerate(pane, turn, answer) {
  const parent = parentOf(turn, pane.id, answer);
  if (!parent) return runTurn(state.turns.indexOf(turn), [pane]);
  if (state.running) return;
  if (!structuredReady()) return;
  return generate(pane, turn, parent);
}

/** Send the results of `answer`'s tool calls; the model goes on in the same pane. */
export function submitResults(pane, turn, answer, results) {
  if (state.running) { toast("Wait for the answers, or stop them (Esc)."); return; }
  if (!structuredReady()) return;
  answer.results = results;
  state.editing = null;
  return generate(pane, turn, answer);
}

/** False (and says why) while the output format or the tools hold an error. */
export function structuredReady() {
  const problem = structuredProblem();
  if (!problem) return true;
  focusSetting(problem.field);
  toast(problem.text);
  return false;
}

/** Show a setting of the sidebar (the drawer on a narrow window) and put the focus in it. */
export function focusSetting(selector) {
  const toggle = $("#settings-toggle");
  if (getComputedStyle(toggle).display !== "none" && !document.body.classList.contains("settings-open")) toggle.click();
  const field = $(selector);
  if (!field) return;
  field.focus({ preventScroll: true });
  field.scrollIntoView({ block: "nearest" });
}

/** Answer turn `index` afresh in `panes` (every pane by default). */
export function runTurn(index, panes = state.panes) {
  const turn = state.turns[index];
  if (!turn || state.running) return;
  if (!structuredReady()) return;
  for (const pane of panes) delete turn.answers[pane.id];
  render({ messages: true });
  return Promise.all(panes.filter((p) => state.panes.includes(p)).map((pane) => generate(pane, turn)));
}

/** Send the prompt as a new turn, unless a parameter, the output format or the tools hold an error. */
export function send() {
  const prompt = $("#prompt");
  const text = prompt.value;
  if (!text.trim()) { prompt.focus(); return; }
  if (state.running) { toast("Wait for the answer, or stop it (Esc)."); return; }
  const problem = paramProblem();
  if (problem) {
    openParams(problem.pane, true);
    toast(`Fix ${problem.name}${state.panes.length > 1 ? ` in pane ${letter(problem.pane)}` : ""}: ${problem.text}`);
    return;
  }
  if (!structuredReady()) return;
  state.editing = null;
  state.turns.push({ id: newId(), user: text, answers: {} });
  prompt.value = "";
  runTurn(state.turns.length - 1);
}

export function stopAll() {
  for (const pane of state.panes) pane.controller?.abort();
}

export function clearConversation() {
  if (state.running) return;
  state.turns = [];
  state.editing = null;
  render({ messages: true });
  $("#prompt").focus();
}
