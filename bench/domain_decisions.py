"""The domain's decisions in nanoseconds per call, and the limiter's memory per tracked client.

Pure objects on the real clock (``SystemClock``, as in production), best of 5 repeats with
``timeit``; memory with ``tracemalloc`` over 100,000 clients at a limit of 10 per window.

    .venv/bin/python bench/domain_decisions.py
"""

from __future__ import annotations

import gc
import random
import timeit
import tracemalloc
from collections.abc import Callable

from adapters.clock.fake import FakeClock
from adapters.clock.system import SystemClock
from domain.breaker import BreakerMode, BreakerPolicy, CallOutcome, CircuitBreaker, WindowType
from domain.rate_limit import (
    RateLimitAlgorithm,
    RateLimitPolicy,
    SlidingWindowCounter,
    SlidingWindowLimiter,
)

CLIENTS = 100_000
CALLS = 100_000
LIMITERS = {
    RateLimitAlgorithm.SLIDING_LOG: SlidingWindowLimiter,
    RateLimitAlgorithm.SLIDING_COUNTER: SlidingWindowCounter,
}


def ns_per_call(step: Callable[[], object], calls: int = CALLS) -> float:
    best = min(timeit.repeat(step, number=calls, repeat=5))
    return best / calls * 1e9


def limiter_one_client(algorithm: RateLimitAlgorithm) -> float:
    limiter = LIMITERS[algorithm](RateLimitPolicy(10_000_000, 60.0, algorithm), SystemClock())
    return ns_per_call(lambda: limiter.allow_request("203.0.113.7"))


def limiter_many_clients(algorithm: RateLimitAlgorithm) -> float:
    limiter = LIMITERS[algorithm](RateLimitPolicy(100, 60.0, algorithm), SystemClock())
    clients = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(CLIENTS)]
    for client in clients:
        limiter.allow_request(client)
    order = clients * 2
    random.Random(7).shuffle(order)
    picks = iter(order * 5)
    return ns_per_call(lambda: limiter.allow_request(next(picks)), calls=len(order) // 5)


def breaker_allow_and_record() -> float:
    breaker = CircuitBreaker(BreakerPolicy(5, 30.0, 1), SystemClock())

    def step() -> None:
        breaker.record(breaker.allow_request(), CallOutcome.SUCCESS)

    return ns_per_call(step)


def limiter_and_breaker(policy: BreakerPolicy | None = None) -> float:
    """One request's decisions; ``record`` gets a duration, as the use case passes it."""
    algorithm = RateLimitAlgorithm.SLIDING_LOG
    clock = SystemClock()
    limiter = SlidingWindowLimiter(RateLimitPolicy(10_000_000, 60.0, algorithm), clock)
    breaker = CircuitBreaker(policy or BreakerPolicy(5, 30.0, 1), clock)
    outcomes = [CallOutcome.FAILURE if n % 5 == 0 else CallOutcome.SUCCESS for n in range(1000)]
    picks = iter(outcomes * (CALLS * 5 // len(outcomes) + 1))

    def step() -> None:
        if limiter.allow_request("203.0.113.7").allowed:
            breaker.record(breaker.allow_request(), next(picks), 0.004)

    return ns_per_call(step)


FAILURE_RATE_POLICIES = {
    "count window of 100": BreakerPolicy(mode=BreakerMode.FAILURE_RATE),
    "time window of 60 s, slow calls on": BreakerPolicy(
        mode=BreakerMode.FAILURE_RATE,
        sliding_window_type=WindowType.TIME,
        sliding_window_size=60,
        slow_call_duration_seconds=1.0,
    ),
}


def bytes_per_client(algorithm: RateLimitAlgorithm) -> float:
    clock = FakeClock()
    limiter = LIMITERS[algorithm](RateLimitPolicy(10, 60.0, algorithm), clock)
    clients = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(CLIENTS)]
    limiter.allow_request("warm-up")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for client in clients:
            for _ in range(10):  # each client at its limit: the log's worst case
                limiter.allow_request(client)
            clock.advance(0.0001)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / CLIENTS


def main() -> None:
    rows: list[tuple[str, str]] = []
    for algorithm in RateLimitAlgorithm:
        rows.append(
            (f"limiter ({algorithm.value}), one client", f"{limiter_one_client(algorithm):,.0f} ns")
        )
        rows.append(
            (
                f"limiter ({algorithm.value}), one of {CLIENTS:,} clients",
                f"{limiter_many_clients(algorithm):,.0f} ns",
            )
        )
    rows.append(("breaker allow + record", f"{breaker_allow_and_record():,.0f} ns"))
    rows.append(("limiter + breaker, one request", f"{limiter_and_breaker():,.0f} ns"))
    rows.extend(
        (
            f"limiter + breaker (failure_rate, {name}), 20 % failures",
            f"{limiter_and_breaker(policy):,.0f} ns",
        )
        for name, policy in FAILURE_RATE_POLICIES.items()
    )
    rows.extend(
        (
            f"memory per tracked client ({algorithm.value}, 10 requests each)",
            f"{bytes_per_client(algorithm):,.0f} bytes",
        )
        for algorithm in RateLimitAlgorithm
    )
    width = max(len(name) for name, _ in rows)
    print("Domain decisions (pure objects, real clock, best of 5)")
    for name, figure in rows:
        print(f"  {name:{width}}  {figure:>12}")


if __name__ == "__main__":
    main()
