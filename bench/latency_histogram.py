"""What recording one latency costs: the dashboard's histogram against HdrHistogram's.

The dashboard's rolling percentiles need one more count per request on the hot path. Two
candidates, timed on the same 100,000 recorded durations (log-normal around 2 ms, like the
gateway's answers under load):

- ``bisect``: ``counts[bisect_left(LATENCY_BOUNDS_SECONDS, seconds)] += 1`` over the
  dashboard's geometric bounds (what ``RequestStats.record`` does);
- ``hdrhistogram``: ``HdrHistogram(1, 60_000_000, 2).record_value(microseconds)`` from PyPI's
  ``hdrhistogram`` (pure Python recording; a C extension only for encoding and adding).

Run: ``.venv/bin/python bench/latency_histogram.py`` (installs nothing; hdrhistogram is timed
when importable, e.g. after ``pip install hdrhistogram``).
"""

from __future__ import annotations

import random
import timeit
from bisect import bisect_left

from adapters.metrics.rolling import LATENCY_BOUNDS_SECONDS

SAMPLES = 100_000
REPEATS = 5


def durations() -> list[float]:
    rng = random.Random(7)
    return [rng.lognormvariate(-6.2, 0.8) for _ in range(SAMPLES)]


def time_bisect(values: list[float]) -> float:
    counts = [0] * (len(LATENCY_BOUNDS_SECONDS) + 1)
    bounds = LATENCY_BOUNDS_SECONDS

    def run() -> None:
        for seconds in values:
            counts[bisect_left(bounds, seconds)] += 1

    return min(timeit.repeat(run, number=1, repeat=REPEATS)) / len(values)


def time_loop_only(values: list[float]) -> float:
    def run() -> None:
        for _seconds in values:
            pass

    return min(timeit.repeat(run, number=1, repeat=REPEATS)) / len(values)


def time_hdr(values: list[float]) -> float | None:
    try:
        from hdrh.histogram import HdrHistogram  # type: ignore[import-not-found]
    except ImportError:
        return None
    histogram = HdrHistogram(1, 60_000_000, 2)
    micros = [int(seconds * 1e6) for seconds in values]

    def run() -> None:
        for value in micros:
            histogram.record_value(value)

    return min(timeit.repeat(run, number=1, repeat=REPEATS)) / len(values)


def main() -> None:
    values = durations()
    loop = time_loop_only(values)
    print(f"{len(LATENCY_BOUNDS_SECONDS)} bounds; ns per record, loop overhead subtracted:")
    print(f"  bisect over the dashboard's bounds : {(time_bisect(values) - loop) * 1e9:7.0f}")
    hdr = time_hdr(values)
    if hdr is None:
        print("  hdrhistogram                      : not installed")
    else:
        print(f"  hdrhistogram record_value         : {(hdr - loop) * 1e9:7.0f}")


if __name__ == "__main__":
    main()
