"""The breaker's sliding windows of recent calls: the last N calls, or the last N seconds.

Both keep running totals (calls, failures, slow calls) and subtract what leaves the window, so
recording a call is O(1) and memory is bounded by the window's size, as Resilience4j's
``FixedSizeSlidingWindowMetrics`` and ``SlidingTimeWindowMetrics`` do:

- ``CountWindow``: a ring of the last ``size`` outcomes, one small int each (bit 1 failed,
  bit 2 slow); the outcome a new call overwrites is subtracted from the totals.
- ``TimeWindow``: a ring of ``size`` one-second buckets. Recording at second ``s`` first empties
  the buckets of the seconds since the last call (at most ``size`` of them, so the cost is
  amortised O(1): a bucket is emptied once per second of time that passed), then adds to the
  bucket of ``s``. A call at time t is in the window while ``floor(now) - floor(t) < size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

_FAILED = 1
_SLOW = 2


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """What the window holds now: its calls, and how many failed or were slow."""

    calls: int
    failures: int
    slow_calls: int

    @property
    def failure_rate_percent(self) -> float:
        return 100.0 * self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate_percent(self) -> float:
        return 100.0 * self.slow_calls / self.calls if self.calls else 0.0


class CallWindow(Protocol):
    """A sliding window of call outcomes with O(1) totals."""

    calls: int
    failures: int
    slow_calls: int

    def record(self, now: float, failed: bool, slow: bool) -> None: ...

    def figures(self, now: float) -> WindowFigures: ...

    def clear(self) -> None: ...


class CountWindow:
    """The last ``size`` calls."""

    __slots__ = ("_next", "_outcomes", "_size", "calls", "failures", "slow_calls")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a count window holds at least one call")
        self._size = size
        self._outcomes = bytearray(size)
        self._next = 0
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    def record(self, now: float, failed: bool, slow: bool) -> None:
        index = self._next
        outcomes = self._outcomes
        if self.calls == self._size:
            leaving = outcomes[index]
            if leaving:
                self.failures -= leaving & _FAILED
                self.slow_calls -= leaving >> 1
        else:
            self.calls += 1
        if failed or slow:
            outcomes[index] = (_FAILED if failed else 0) | (_SLOW if slow else 0)
            self.failures += failed
            self.slow_calls += slow
        else:
            outcomes[index] = 0
        index += 1
        self._next = 0 if index == self._size else index

    def figures(self, now: float) -> WindowFigures:
        return WindowFigures(self.calls, self.failures, self.slow_calls)

    def clear(self) -> None:
        self._outcomes = bytearray(self._size)
        self._next = 0
        self.calls = self.failures = self.slow_calls = 0


class TimeWindow:
    """The calls of the last ``size`` seconds, in one-second buckets."""

    __slots__ = (
        "_calls",
        "_failures",
        "_second",
        "_size",
        "_slow",
        "calls",
        "failures",
        "slow_calls",
    )

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a time window spans at least one second")
        self._size = size
        self._calls = [0] * size
        self._failures = [0] * size
        self._slow = [0] * size
        self._second: int | None = None
        """The latest second the buckets have been moved to; None before the first call."""
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    def _move_to(self, second: int) -> None:
        last = self._second
        if last is not None and second <= last:
            return
        self._second = second
        if last is None:
            return
        if second - last >= self._size:
            self.clear()
            self._second = second
            return
        size = self._size
        for passed in range(last + 1, second + 1):
            index = passed % size
            self.calls -= self._calls[index]
            self.failures -= self._failures[index]
            self.slow_calls -= self._slow[index]
            self._calls[index] = self._failures[index] = self._slow[index] = 0

    def record(self, now: float, failed: bool, slow: bool) -> None:
        second = math.floor(now)
        if second != self._second:
            self._move_to(second)
        index = second % self._size
        self._calls[index] += 1
        self.calls += 1
        if failed:
            self._failures[index] += 1
            self.failures += 1
        if slow:
            self._slow[index] += 1
            self.slow_calls += 1

    def figures(self, now: float) -> WindowFigures:
        self._move_to(math.floor(now))
        return WindowFigures(self.calls, self.failures, self.slow_calls)

    def clear(self) -> None:
        size = self._size
        self._calls = [0] * size
        self._failures = [0] * size
        self._slow = [0] * size
        self._second = None
        self.calls = self.failures = self.slow_calls = 0
