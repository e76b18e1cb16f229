"""The subset of Go's text/template that /api/generate's `template` may use: the one-turn
templates Ollama's Modelfiles write.

  {{ .System }}  {{ .Prompt }}       the system prompt and the prompt
  {{ .Response }}                    where the answer goes: the rest of the template is dropped
                                     (as Ollama renders a template for generation)
  {{ if .System }}...{{ else }}...{{ end }}   (also `if .Prompt`): kept when the value is non-empty
  {{- ... -}}                        trim the whitespace before / after the action
  {{/* ... */}}                      a comment

Anything else (.Messages, range, functions, pipelines) is refused with TemplateError, naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FIELDS = ("System", "Prompt", "Response")
SUPPORTED = ("{{ .System }}, {{ .Prompt }}, {{ .Response }}, {{ if .System }} or {{ if .Prompt }} "
             "... {{ else }} ... {{ end }}, and {{- -}} trim markers")


class TemplateError(ValueError):
    pass


@dataclass
class _If:
    name: str
    then: list = field(default_factory=list)
    otherwise: list = field(default_factory=list)
    in_else: bool = False


class _Cut(Exception):
    """Rendering reached {{ .Response }}."""


def _tokens(template: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", inner) in order, with the trim markers applied to the text."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        inner = m.group(1)
        if trim_next:
            text = text.lstrip()
        trim_left = inner[:1] == "-" and inner[1:2].isspace()
        trim_next = inner[-1:] == "-" and inner[-2:-1].isspace()
        if trim_left:
            text = text.rstrip()
            inner = inner[1:]
        if trim_next:
            inner = inner[:-1]
        out += [("text", text), ("action", inner.strip())]
        pos = m.end()
    rest = template[pos:]
    if "{{" in rest:
        raise TemplateError("template: an action opened with {{ is never closed with }}")
    out.append(("text", rest.lstrip() if trim_next else rest))
    return out


def _field(expr: str, action: str) -> str:
    if expr.startswith(".") and expr[1:] in _FIELDS:
        return expr[1:]
    raise TemplateError(f"template: {{{{ {action} }}}} is not supported here; supported: {SUPPORTED}")


def parse(template: str) -> list:
    """The template as nodes: strings, field names (("field", name)) and _If blocks."""
    root: list = []
    stack: list[_If] = []

    def body() -> list:
        if not stack:
            return root
        top = stack[-1]
        return top.otherwise if top.in_else else top.then

    for kind, value in _tokens(template):
        if kind == "text":
            if value:
                body().append(value)
        elif value.startswith("/*") and value.endswith("*/"):
            continue
        elif value.startswith(("if ", "if\t")):
            name = _field(value[2:].strip(), value)
            if name == "Response":
                raise TemplateError(f"template: {{{{ {value} }}}} is not supported here; supported: {SUPPORTED}")
            block = _If(name)
            body().append(block)
            stack.append(block)
        elif value == "else":
            if not stack or stack[-1].in_else:
                raise TemplateError("template: {{ else }} outside an {{ if }}")
            stack[-1].in_else = True
        elif value == "end":
            if not stack:
                raise TemplateError("template: {{ end }} without an {{ if }}")
            stack.pop()
        else:
            body().append(("field", _field(value, value)))
    if stack:
        raise TemplateError("template: an {{ if }} is never closed with {{ end }}")
    return root


def render(template: str, *, system: str, prompt: str) -> str:
    """The prompt text the template gives (TemplateError if it uses more than the subset)."""
    values = {"System": system, "Prompt": prompt}
    out: list[str] = []

    def walk(nodes: list) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _If):
                walk(node.then if values[node.name] else node.otherwise)
            elif node[1] == "Response":
                raise _Cut
            else:
                out.append(values[node[1]])

    try:
        walk(parse(template))
    except _Cut:
        pass
    return "".join(out)
