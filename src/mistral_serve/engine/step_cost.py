"""What an engine step costs, learned online from the steps this engine has run.

The scheduler sizes prefill chunks with `predict` while streams are decoding (a decoding stream
waits one whole step per token, so a 512-token chunk stalls every stream for as long as the chunk
takes); the engine times every step and feeds it back with `observe`. A step is described by its
shape, the two quantities that drive its time:

    seconds ~= a + b * tokens + c * attended

    a: the fixed cost of one forward pass (on a CPU's decode step, reading every weight once);
    b: per computed position (matmul rows, norms, sampling); c: per query-key pair of attention.

Worked example: 4 streams decoding at contexts 100, 200, 300, 400 next to a 64-token prompt chunk
starting at 0 is tokens 4 + 64 = 68 and attended 101 + 201 + 301 + 401 + (1 + 2 + ... + 64) = 3084.

`OnlineStepCost` fits a, b, c >= 0 by least squares over the steps seen, each weighed down by half
every `half_life` steps, so the model follows the machine (another process taking the CPU, a
growing batch) without forgetting what a large chunk costs after a run of small decode steps.
Non-negative, so that a prediction never falls as a chunk grows: the scheduler searches chunk
sizes by bisection. Pure Python plus a 3x3 numpy solve: deterministic for the same observations.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np


def attended_pairs(start: int, n: int, window: int | None = None) -> int:
    """Query-key pairs of n queries at positions start .. start+n-1: the query at p sees
    p + 1 keys, or `window` of them with a sliding window."""
    first, last = start + 1, start + n  # keys seen by the first and the last query, unwindowed
    if window is None or last <= window:
        return (first + last) * n // 2
    if first > window:
        return window * n
    below = window - first + 1  # queries that see fewer than window keys
    return (first + window) * below // 2 + window * (n - below)


@dataclass(frozen=True, slots=True)
class StepShape:
    tokens: int = 0  # positions computed in the step: the rows of every matmul
    attended: int = 0  # query-key pairs scored by attention, over the whole batch

    def plus(self, start: int, n: int, window: int | None = None) -> StepShape:
        """This shape with one more item: n positions of one sequence from `start`."""
        return StepShape(self.tokens + n, self.attended + attended_pairs(start, n, window))

    @classmethod
    def of(cls, items: Iterable[tuple[int, int]], window: int | None = None) -> StepShape:
        """The shape of a batch of (start, n) items."""
        shape = cls()
        for start, n in items:
            shape = shape.plus(start, n, window)
        return shape


class StepCost(Protocol):
    """Seconds a step of a given shape takes: the scheduler predicts, the engine observes."""

    def predict(self, shape: StepShape) -> float | None:
        """Predicted seconds; None while nothing is known (the scheduler then sets no limit)."""

    def observe(self, shape: StepShape, seconds: float) -> None:
        """A step of this shape took `seconds` (the whole step: schedule, forward, sample, commit)."""


# Feature units. Where the steps seen cannot tell the terms apart (one step so far, or only
# decode steps of one size), the fit shares the time out in proportion to the features, so the
# units decide who gets it: a token counts for much more than the fixed term, and so a fresh model
# explains a step by its tokens. That is the cautious side: it predicts a prompt chunk as costly
# and the decodes alone as cheap, so the first chunks come out short, never a stall (favouring
# the fixed term instead let a cold model read 512 tokens next to running streams).
TOKEN_UNIT = 1
PAIR_UNIT = 100_000
# A step far slower than predicted (a kernel compiled on first use, the process descheduled)
# counts as this many times the prediction at most: one such step does not make every chunk the
# minimum for the next hundred steps, while a real slowdown still comes through within a few steps.
OUTLIER = 4.0
# Keeps the solve defined while the observations do not yet tell the terms apart (one step, or
# only decode steps of one size); small against the features' typical squares.
RIDGE = 1e-9


class OnlineStepCost:
    """Exponentially weighted non-negative least squares of step time on (1, tokens, attended).

    warmup: steps ignored at the start (the engine's first forward pass compiles kernels and
    touches fresh memory: its time says nothing about the next ones). After that, a step slower
    than OUTLIER times its prediction counts as that much."""

    def __init__(self, half_life: float = 32.0, warmup: int = 1) -> None:
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        self.decay = 0.5 ** (1.0 / half_life)
        self.warmup = warmup
        self.seen = 0  # observations kept
        self._xtx = np.zeros((3, 3))  # weighted sums of x x^T, x y and y^2
        self._xty = np.zeros(3)
        self._yty = 0.0
        self._coef: np.ndarray | None = None  # (a, b, c) in feature units; None: refit

    @staticmethod
    def features(shape: StepShape) -> np.ndarray:
        return np.array([1.0, shape.tokens / TOKEN_UNIT, shape.attended / PAIR_UNIT])

    def observe(self, shape: StepShape, seconds: float) -> None:
        if self.warmup > 0:
            self.warmup -= 1
            return
        if not math.isfinite(seconds) or seconds < 0:
            return
        predicted = self.predict(shape)
        if predicted is not None and predicted > 0:
            seconds = min(seconds, OUTLIER * predicted)
        x = self.features(shape)
        self._xtx = self.decay * self._xtx + np.outer(x, x)
        self._xty = self.decay * self._xty + x * seconds
        self._yty = self.decay * self._yty + seconds * seconds
        self.seen += 1
        self._coef = None

    def predict(self, shape: StepShape) -> float | None:
        if self.seen == 0:
            return None
        if self._coef is None:
            self._coef = self._fit()
        return float(self.features(shape) @ self._coef)

    @property
    def coefficients(self) -> tuple[float, float, float]:
        """(seconds per step, per token, per attended pair): for logs and tests."""
        if self.seen == 0:
            return (0.0, 0.0, 0.0)
        if self._coef is None:
            self._coef = self._fit()
        a, b, c = self._coef
        return (float(a), float(b) / TOKEN_UNIT, float(c) / PAIR_UNIT)

    def _fit(self) -> np.ndarray:
        """Non-negative least squares, exactly: with three terms, the best of the unconstrained
        fits on each subset of the terms whose coefficients come out non-negative. Between fits
        that are as good (the terms cannot be told apart yet), the one with more terms wins:
        there the ridge shares the time out by the features (see TOKEN_UNIT)."""
        best, best_loss = np.zeros(3), self._yty
        tolerance = 1e-9 * self._yty  # rounding in the loss, which is a difference of large sums
        for size in (3, 2, 1):
            for terms in itertools.combinations(range(3), size):
                idx = list(terms)
                a = self._xtx[np.ix_(idx, idx)] + RIDGE * np.eye(size)
                coef = np.linalg.solve(a, self._xty[idx])
                if (coef < 0).any():
                    continue
                full = np.zeros(3)
                full[idx] = coef
                loss = self._yty - 2 * full @ self._xty + full @ self._xtx @ full
                if loss < best_loss - tolerance:
                    best, best_loss = full, loss
        return best


def largest_chunk(cost: StepCost, shape: StepShape, start: int, most: int, limit: float,
                  window: int | None = None) -> int:
    """The most positions (0 .. most) of one sequence from `start` that can join a step of
    `shape` with the predicted step time within `limit` seconds. Bisection: the prediction grows
    with the chunk."""

    def fits(n: int) -> bool:
        predicted = cost.predict(shape.plus(start, n, window))
        return predicted is None or predicted <= limit

    if fits(most):
        return most
    lo, hi = 0, most  # fits(lo) is taken as true (0 adds nothing), fits(hi) is false
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo
