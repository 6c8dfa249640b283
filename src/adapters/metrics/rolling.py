"""Rolling windows over counters that only ever grow, and latency percentiles from buckets.

The request path keeps cumulative integers (``RouteCounters``, ``RequestStats``): one increment
per event, no lock, no allocation. Nothing on that path knows about windows. A window is made
afterwards, once per dashboard interval: ``RollingWindow.add`` stores a reading of the counters
(a tuple of integers and the latency bucket counts) with its time, drops readings older than the
window, and ``RollingWindow.delta`` subtracts the oldest kept reading from the newest. Old
samples leave the window because their reading does, not because anything is decremented.

Latencies are counted in geometric buckets: ``LATENCY_BOUNDS_SECONDS`` grows by 2^(1/16) from
50 µs to 60 s (about 4.4 % per bucket), so a percentile read from the bucket counts is the
bucket's upper bound, at most one bucket (4.4 %) above the true value. Recording is one
``bisect_left`` over the bounds (``bench/latency_histogram.py`` measures it against
HdrHistogram's pure-Python ``record_value``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

_GROWTH = 2 ** (1 / 16)
_LOWEST_SECONDS = 50e-6
_HIGHEST_SECONDS = 60.0


def _geometric_bounds() -> tuple[float, ...]:
    bounds = [_LOWEST_SECONDS]
    while bounds[-1] < _HIGHEST_SECONDS:
        bounds.append(bounds[-1] * _GROWTH)
    return tuple(bounds)


LATENCY_BOUNDS_SECONDS = _geometric_bounds()
"""Upper bounds (inclusive) of the latency buckets; one more bucket holds anything above."""


def new_latency_counts() -> list[int]:
    """Zeroed bucket counts for ``LATENCY_BOUNDS_SECONDS`` (and the overflow bucket)."""
    return [0] * (len(LATENCY_BOUNDS_SECONDS) + 1)


def latency_percentile(counts: Sequence[int], fraction: float) -> float | None:
    """The ``fraction`` (0..1] quantile of the bucketed latencies, in seconds; None if empty.

    It is the upper bound of the bucket that holds the quantile's sample (the overflow bucket
    reports the highest bound).
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = max(1, -int(-fraction * total // 1))  # ceil(fraction * total), at least the first
    seen = 0
    last = len(LATENCY_BOUNDS_SECONDS) - 1
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return LATENCY_BOUNDS_SECONDS[min(index, last)]
    return LATENCY_BOUNDS_SECONDS[last]  # pragma: no cover - the loop always reaches the rank


@dataclass(frozen=True, slots=True)
class Reading:
    """Cumulative counters read at one time."""

    at: float
    counters: tuple[int, ...]
    latency_counts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WindowDelta:
    """What happened between the oldest kept reading and the newest."""

    seconds: float
    counters: tuple[int, ...]
    latency_counts: tuple[int, ...]

    def per_second(self, index: int) -> float:
        return self.counters[index] / self.seconds if self.seconds > 0 else 0.0


class RollingWindow:
    """Readings of one set of cumulative counters, kept for ``window_seconds``.

    The oldest kept reading is the newest one at least ``window_seconds`` old (once the history
    is that long), so ``delta()`` covers between ``window_seconds`` and ``window_seconds`` plus
    one interval between readings. Before that it covers everything since the first reading.
    """

    def __init__(self, window_seconds: float) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.window_seconds = window_seconds
        self._readings: deque[Reading] = deque()

    def add(self, reading: Reading) -> None:
        readings = self._readings
        if readings and reading.at < readings[-1].at:
            raise ValueError("readings must come in time order")
        readings.append(reading)
        horizon = reading.at - self.window_seconds
        while len(readings) >= 2 and readings[1].at <= horizon:
            readings.popleft()

    def delta(self) -> WindowDelta:
        if not self._readings:
            return WindowDelta(0.0, (), ())
        first, last = self._readings[0], self._readings[-1]
        return WindowDelta(
            last.at - first.at,
            tuple(b - a for a, b in zip(first.counters, last.counters, strict=True)),
            tuple(b - a for a, b in zip(first.latency_counts, last.latency_counts, strict=True)),
        )
