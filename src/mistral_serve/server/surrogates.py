"""Finding unpaired UTF-16 surrogates in a JSON text, before it is parsed.

JSON may spell any character as a \\uXXXX escape, and Python's parser accepts a surrogate escape
without its other half ("\\ud800"), giving a str that is not valid Unicode: it cannot be encoded
as UTF-8, so the tokenizer, the store and the JSON renderer all fail on it later. Such a body is
refused up front instead.
"""

from __future__ import annotations

import re

# Any escape, so that scanning left to right pairs backslashes correctly ("\\\\ud800" is an escaped
# backslash followed by plain text); group 1 is the code unit of a surrogate \u escape.
_ESCAPE = re.compile(rb"\\(?:u([dD][89a-fA-F][0-9a-fA-F]{2})|.)", re.S)
_ANY_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def lone_surrogate(body: bytes) -> int | None:
    """The byte offset of the first \\u escape of a surrogate without its other half, or None."""
    if not _ANY_SURROGATE.search(body):  # the usual case, at the speed of one regex scan
        return None
    high: tuple[int, int] | None = None  # (start, end) of a high surrogate awaiting its low half
    for m in _ESCAPE.finditer(body):
        unit = m.group(1)
        is_low = unit is not None and unit[1:2] in b"cdefCDEF"
        if high is not None:
            if is_low and m.start() == high[1]:
                high = None
                continue
            return high[0]
        if unit is None:
            continue
        if is_low:
            return m.start()  # a low half with no high half before it
        high = (m.start(), m.end())
    return high[0] if high is not None else None
