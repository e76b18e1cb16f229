"""Following a list of tool calls while the model writes it, for streaming.

After `[TOOL_CALLS]` the model writes `[{"name": "f", "arguments": {...}, "id": "..."}, ...]`
(the grammar holds it to that shape). OpenAI streams a call as a first delta with its id and name,
then the arguments' JSON text in pieces as it is written. CallScanner reads the text so far, one
character at a time from where it stopped, and knows for each call its name once the name's
string is closed and where its arguments' text starts (and, once closed, ends).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class ScannedCall:
    name: str | None = None
    args_start: int | None = None  # index of the arguments' first character in the text
    args_end: int | None = None  # one past their last, once they are complete


class CallScanner:
    """A JSON lexer just deep enough for the calls list: depth 1 is the list, 2 a call object."""

    def __init__(self) -> None:
        self.calls: list[ScannedCall] = []
        self._pos = 0
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._string_start = 0
        self._expect = "key"  # inside a call object: key, colon, value or comma
        self._key: str | None = None

    def scan(self, text: str) -> None:
        """Read what `text` (the whole list so far; it only ever grows) adds since the last call."""
        for i in range(self._pos, len(text)):
            self._char(text, i)
        self._pos = len(text)

    def args_text(self, text: str, k: int) -> str:
        """Call k's arguments as written so far (all of them once complete)."""
        call = self.calls[k]
        if call.args_start is None:
            return ""
        return text[call.args_start:call.args_end if call.args_end is not None else len(text)]

    def _char(self, text: str, i: int) -> None:
        c = text[i]
        if self._in_string:
            if self._escape:
                self._escape = False
            elif c == "\\":
                self._escape = True
            elif c == '"':
                self._in_string = False
                self._string_end(text, i)
            return
        if c == '"':
            self._in_string = True
            self._string_start = i
            if self._depth == 2 and self._expect == "value":
                self._value_start(i)
            return
        if c in "{[":
            if self._depth == 2 and self._expect == "value":
                self._value_start(i)
            self._depth += 1
            if self._depth == 2 and c == "{":
                self.calls.append(ScannedCall())
                self._expect, self._key = "key", None
            return
        if c in "}]":
            self._depth -= 1
            if self._depth == 2:  # a structured value of the call closed
                self._value_end(i + 1)
            elif self._depth == 1 and self.calls:  # the call object closed (after a bare value?)
                self._value_end(i)
            return
        if self._depth == 2:
            if c == ":":
                self._expect = "value"
            elif c == ",":
                self._value_end(i)
                self._expect = "key"
            elif not c.isspace() and self._expect == "value":
                self._value_start(i)  # a number, true, false or null

    def _string_end(self, text: str, i: int) -> None:
        if self._depth != 2:
            return
        if self._expect == "key":
            self._key = text[self._string_start + 1:i]
            self._expect = "colon"
        elif self._expect == "value_open":
            if self._key == "name":
                try:
                    self.calls[-1].name = json.loads(text[self._string_start:i + 1])
                except ValueError:
                    pass
            self._value_end(i + 1)

    def _value_start(self, i: int) -> None:
        if self._expect != "value":
            return
        self._expect = "value_open"
        if self._key == "arguments" and self.calls:
            self.calls[-1].args_start = i

    def _value_end(self, end: int) -> None:
        if self._expect != "value_open":
            return
        self._expect = "comma"
        call = self.calls[-1] if self.calls else None
        if call is not None and self._key == "arguments" and call.args_end is None:
            call.args_end = end
