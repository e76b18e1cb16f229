"""Stop strings in a stream: text is released only once it cannot be the start of a stop string.

Worked example, stop = ["###"]: pieces "Hi #", "#", "# there" release "Hi ", then nothing
(held "##" could still become "###"), then the stop string completes: the text ends as "Hi "
and the request finishes. Pieces "a #", "b" release "a ", then "#b" (no longer a prefix).
"""

from __future__ import annotations

from typing import Sequence


class StopBuffer:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        """Add new text; return the part that is safe to emit. Sets `stopped` when a stop
        string completed (the returned text then ends exactly before it)."""
        if self.stopped:
            return ""
        text = self._held + piece
        if not self.stops:
            self._held = ""
            return text
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        hold = self._longest_partial(text)
        self._held = text[len(text) - hold:] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """End of generation: whatever was held back is text after all."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
