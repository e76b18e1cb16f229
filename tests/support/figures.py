"""The suite's two sizes, and the figures its tests report.

`make test` runs every scenario at a reduced size (minutes on 2 cores); `make soak` sets
RELIABILITY_FULL=1 for the sizes docs/reliability.md quotes.
"""

from __future__ import annotations

import os

FULL = os.environ.get("RELIABILITY_FULL", "") not in ("", "0")

FIGURES: list[str] = []  # printed at the end of the run by conftest.py


def size(reduced: int, full: int) -> int:
    return full if FULL else reduced


def report(scenario: str, text: str) -> None:
    """Print one figure (seen with -s) and keep it for the run's summary, which pytest shows
    even though it captures the output of passing tests."""
    line = f"{scenario}: {text}"
    print(line)
    FIGURES.append(line)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
