"""Tool calling: OpenAI `tools` / `tool_choice` in, Mistral's `[TOOL_CALLS]` out, OpenAI
`tool_calls` back.

Mistral v3 models answer a call as `[TOOL_CALLS] [{"name": ..., "arguments": {...}}]`, where
`[TOOL_CALLS]` is a control token. The engine constrains what follows it to the calls' schema
(engine/grammar.py: a trigger token), so the calls parse; `required` or a named function forces
the trigger as the first token. Here the request is turned into that plan, the conversation's
tool-call ids into the 9-character ids mistral-common insists on, and the output back into calls,
each with a fresh id of that form.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from ..engine.params import GuidedDecoding
from ..tokenizer import Tokenizer
from .errors import bad_request
from .guided import schema_json
from .tool_stream import CallScanner

_ID_CHARS = string.ascii_letters + string.digits
_MISTRAL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")
TOOL_CALLS = "[TOOL_CALLS]"


def new_call_id() -> str:
    """A fresh call id as Mistral's format requires it (9 letters or digits), so it can come back
    unchanged (mistral_call_id keeps it). Drawn from the OS's CSPRNG for each call: 62**9 (about
    1.4e16) ids, so two calls share one with odds of about 1e-16 per pair."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(9))


def mistral_call_id(call_id: str) -> str:
    """An OpenAI tool-call id (any string, e.g. "call_abc123") as a 9-character Mistral id. The
    same id always maps to the same result, so a call and its result stay paired (and the prompt
    stays the same from turn to turn, for the prefix cache)."""
    if _MISTRAL_ID.match(call_id):
        return call_id
    digest = int.from_bytes(hashlib.blake2b(call_id.encode(), digest_size=8).digest(), "big")
    chars = []
    for _ in range(9):
        digest, r = divmod(digest, len(_ID_CHARS))
        chars.append(_ID_CHARS[r])
    return "".join(chars)


def map_call_ids(messages: list[dict]) -> list[dict]:
    """The conversation with every tool-call id in Mistral's form (copies, inputs untouched)."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "id": mistral_call_id(c["id"])} for c in m["tool_calls"]]
        if isinstance(m.get("tool_call_id"), str):
            m["tool_call_id"] = mistral_call_id(m["tool_call_id"])
        out.append(m)
    return out


@dataclass
class ToolPlan:
    """What a request's tools mean for the prompt and for decoding."""

    tools: list[dict] | None = None  # OpenAI tool objects for the prompt
    names: set[str] = field(default_factory=set)
    trigger: int | None = None  # the `[TOOL_CALLS]` id when calls may be made
    guided: GuidedDecoding | None = None
    banned: list[int] = field(default_factory=list)


def plan_tools(body, tokenizer: Tokenizer) -> ToolPlan:
    """Validate tools / tool_choice / parallel_tool_calls (400 naming the field) and plan them."""
    trigger = tokenizer.control_token(TOOL_CALLS)
    banned = [trigger] if trigger is not None else []
    choice = body.tool_choice
    if not body.tools:
        if choice not in (None, "none"):
            raise bad_request("tool_choice needs tools", param="tool_choice")
        return ToolPlan(banned=banned)  # no tools offered: the model may not call any
    if tokenizer.template != "mistral":
        # Each template family spells calls its own way (<tool_call>, <|python_tag|>, ...); we
        # parse Mistral's [TOOL_CALLS] only.
        raise bad_request(f"tool calling with this checkpoint's chat template ({tokenizer.version}) is not "
                          "supported; mistral-serve parses Mistral's [TOOL_CALLS] format only",
                          param="tools", code="unsupported_parameter")
    if not tokenizer.supports_tools or trigger is None:
        raise bad_request(f"this model's tokenizer ({tokenizer.version}) does not support tools; "
                          "tool calling needs a v3 or later tokenizer", param="tools", code="unsupported_parameter")
    functions = [t.function for t in body.tools]
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise bad_request(f"tools: function name {dup!r} appears more than once", param="tools")
    for i, f in enumerate(functions):
        if f.parameters is not None:
            schema_json(f.parameters, f"tools.{i}.function.parameters")
    # mistral-common's function model has no "strict"; it only matters to us (always enforced).
    tools = [t.model_dump(exclude_none=True, exclude={"function": {"strict"}}) for t in body.tools]
    choice = choice or "auto"  # the OpenAI default when tools are given
    if choice == "none":
        return ToolPlan(tools, set(names), banned=banned)
    if not isinstance(choice, str):  # a named function
        if choice.function.name not in names:
            raise bad_request(f"tool_choice names function {choice.function.name!r}, which is not in tools",
                              param="tool_choice")
        functions = [f for f in functions if f.name == choice.function.name]
    schema = calls_schema(functions, parallel=body.parallel_tool_calls and isinstance(choice, str))
    guided = GuidedDecoding("json_schema", json.dumps(schema, separators=(",", ":"), ensure_ascii=False),
                            param="tools", trigger_token=trigger, trigger_required=choice != "auto")
    return ToolPlan(tools, set(names), trigger, guided)


def calls_schema(functions, parallel: bool) -> dict:
    """The JSON Schema of the array the model writes after `[TOOL_CALLS]`: objects with the
    function's name, its arguments (the function's parameter schema) and optionally an id, in
    the order Mistral's format writes them. The id stays allowed because the models learned to
    write one (forbidding it would push them off their format); parse_calls ignores it."""
    variants = []
    defs: dict[str, Any] = {}
    for i, f in enumerate(functions):
        at = "#/items" + (f"/anyOf/{i}" if len(functions) > 1 else "") + "/properties/arguments"
        arguments = _rebase_refs(f.parameters, at, f"f{i}_", defs) if f.parameters else {"type": "object"}
        variants.append({"type": "object",
                         "properties": {"name": {"const": f.name}, "arguments": arguments,
                                        "id": {"type": "string", "pattern": "^[a-zA-Z0-9]{9}$"}},
                         "required": ["name", "arguments"], "additionalProperties": False})
    schema: dict[str, Any] = {"type": "array", "items": variants[0] if len(variants) == 1 else {"anyOf": variants},
                              "minItems": 1}
    if not parallel:
        schema["maxItems"] = 1
    if defs:
        schema["$defs"] = defs
    return schema


_DEFS = ("#/$defs/", "#/definitions/")


def _rebase_refs(parameters: dict, at: str, prefix: str, defs: dict) -> dict:
    """A parameter schema moved to `at` inside the calls schema. Its definitions move to the
    root's $defs (as {prefix}{name}, so two functions' names cannot clash) and its refs follow;
    other local refs ("#/properties/x") are rebased onto `at`."""
    def rebase(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str) and v.startswith("#"):
                    d = next((d for d in _DEFS if v.startswith(d)), None)
                    out[k] = f"#/$defs/{prefix}{v[len(d):]}" if d else at + v[1:]
                else:
                    out[k] = rebase(v)
            return out
        if isinstance(node, list):
            return [rebase(v) for v in node]
        return node

    moved = rebase(parameters)
    for key in ("$defs", "definitions"):
        for name, sub in (moved.pop(key, None) or {}).items():
            defs[prefix + name] = sub
    return moved


def parse_calls(text: str, names: set[str]) -> list[dict] | None:
    """OpenAI tool_calls, each with a fresh id, from the text after `[TOOL_CALLS]`, or None if it
    is not a list of calls to known functions (the caller then returns the text as content)."""
    try:
        calls = json.loads(text)
    except ValueError:
        return None
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for call in calls:
        if not isinstance(call, dict) or call.get("name") not in names:
            return None
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):  # some fine-tunes write the arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        # The id is always the server's, never one the model wrote: a model's ids repeat (the
        # demo wrote 0aA120aA1 in 3 of 4 fresh requests), and clients key results by id.
        out.append({"id": new_call_id(), "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}})
    return out


class ChoiceOutput:
    """One choice's output split into content and tool calls, as it streams in.

    Text before `[TOOL_CALLS]` is content and streams as it comes. What follows is the calls
    list: followed as it is written (CallScanner) so that a stream can send each call's name and
    then its arguments piece by piece, and parsed as a whole when the choice ends. Control tokens
    decode to nothing, so both parts are decoded from the token ids on either side of the
    trigger, exactly.
    """

    def __init__(self, tokenizer: Tokenizer, plan: ToolPlan) -> None:
        self.tokenizer = tokenizer
        self.plan = plan
        self.ids: list[int] = []
        self.sent = ""  # content already handed out
        self.split: int | None = None  # index of the trigger in ids
        self.after = ""  # the calls list so far
        self.scanner = CallScanner()
        self.streamed: list[tuple[str, str]] = []  # per announced call: its id, the arguments sent

    def feed(self, text: str, token_ids: list[int]) -> str:
        """The content to emit for one delta of the engine."""
        start = len(self.ids)
        self.ids += token_ids
        if self.split is None and self.plan.trigger is not None and self.plan.trigger in token_ids:
            self.split = start + token_ids.index(self.plan.trigger)
            content = self.tokenizer.decode(self.ids[:self.split])
            text = content[len(self.sent):] if content.startswith(self.sent) else ""
        elif self.split is not None:
            text = ""
        if self.split is not None:
            # The calls so far, less a character still being completed by later tokens.
            self.after = self.tokenizer.decode(self.ids[self.split + 1:]).rstrip("\ufffd")
            self.scanner.scan(self.after)
        self.sent += text
        return text

    def call_deltas(self) -> list[dict]:
        """Tool-call deltas for what the calls list gained: a call's id and name once its name is
        written, then its arguments' new text."""
        deltas = []
        for k, call in enumerate(self.scanner.calls):
            if k == len(self.streamed):
                if call.name not in self.plan.names:
                    break  # not a call to announce (yet): the final parse decides
                self.streamed.append((new_call_id(), ""))
                deltas.append(_call_header(k, self.streamed[k][0], call.name))
            if k < len(self.streamed):
                call_id, sent = self.streamed[k]
                text = self.scanner.args_text(self.after, k)
                if len(text) > len(sent) and text.startswith(sent):
                    deltas.append(_call_arguments(k, text[len(sent):]))
                    self.streamed[k] = (call_id, text)
        return deltas

    def closing_deltas(self, calls: list[dict]) -> list[dict]:
        """At the end of a stream: the deltas the parsed `calls` still need (their ids become
        the ones already sent; a call not announced yet keeps the fresh id parse_calls gave it)."""
        deltas = []
        for k, call in enumerate(calls):
            if k < len(self.streamed):
                call_id, sent = self.streamed[k]
                call["id"] = call_id
                # What was streamed is the model's own text; finish it in the same form.
                raw = self.scanner.args_text(self.after, k) if k < len(self.scanner.calls) else ""
                full = raw if raw.startswith(sent) and _same_json(raw, call["function"]["arguments"]) \
                    else call["function"]["arguments"]
                if len(full) > len(sent) and full.startswith(sent):
                    deltas.append(_call_arguments(k, full[len(sent):]))
            else:
                deltas += [_call_header(k, call["id"], call["function"]["name"]),
                           _call_arguments(k, call["function"]["arguments"])]
        return deltas

    def finish(self) -> tuple[str, list[dict] | None]:
        """At the end: (content still to emit, tool calls or None). Calls that do not parse are
        returned as content, so a malformed answer is never lost."""
        if self.split is None:
            return "", None
        after = self.tokenizer.decode(self.ids[self.split + 1:])
        calls = parse_calls(after, self.plan.names)
        if calls is None:
            return after, None
        return "", calls


def _call_header(index: int, call_id: str, name: str) -> dict:
    # As the OpenAI API starts a call: its id, type and name, with empty arguments.
    return {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}


def _call_arguments(index: int, text: str) -> dict:
    return {"index": index, "function": {"arguments": text}}


def _same_json(a: str, b: str) -> bool:
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False
