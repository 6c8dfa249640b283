"""Rules of the in-memory limiters that planted bugs once slipped past (issue 16).

Written as the rules: which requests are allowed, and which clients are still remembered.
"""

from __future__ import annotations

import tracemalloc

from adapters.clock.fake import FakeClock
from domain.rate_limit import (
    RateLimitAlgorithm,
    RateLimitPolicy,
    SlidingWindowCounter,
    SlidingWindowLimiter,
)


def counter(clock: FakeClock, limit: int = 10, window: float = 10.0) -> SlidingWindowCounter:
    return SlidingWindowCounter(
        RateLimitPolicy(limit, window, RateLimitAlgorithm.SLIDING_COUNTER), clock
    )


def allowed_in_a_row(limiter: SlidingWindowCounter, client: str, tries: int = 50) -> int:
    """How many requests of ``client`` are allowed now, one after another, until one is refused."""
    for n in range(tries):
        if not limiter.allow_request(client).allowed:
            return n
    return tries


# --- sliding log: the idle sweep ------------------------------------------------------------


def test_a_client_idle_for_a_window_is_forgotten_even_behind_an_older_active_client() -> None:
    clock = FakeClock(start=0.0)
    limiter = SlidingWindowLimiter(RateLimitPolicy(5, 10.0), clock)
    limiter.allow_request("early-but-active")  # t=0
    clock.advance(1.0)
    limiter.allow_request("idle")  # t=1, never again
    clock.advance(1.0)
    limiter.allow_request("early-but-active")  # t=2: now the most recently used
    clock.advance(9.5)  # t=11.5: "idle" has been idle for more than a window
    limiter.allow_request("early-but-active")
    assert limiter.tracked_clients == 1


# --- sliding counter ------------------------------------------------------------------------


def test_after_a_rollover_the_bucket_just_ended_weighs_as_the_previous_one() -> None:
    clock = FakeClock(start=0.0)
    limiter = counter(clock, limit=10, window=10.0)
    assert allowed_in_a_row(limiter, "c") == 10  # bucket [0, 10): its count is 10
    clock.advance(15.0)  # t=15: half of bucket [0, 10) is still in the window: 10 x 0.5 = 5
    assert allowed_in_a_row(limiter, "c") == 5


def test_the_previous_bucket_still_weighs_a_full_window_after_the_last_request() -> None:
    clock = FakeClock(start=0.0)
    limiter = counter(clock, limit=10, window=10.0)
    clock.advance(0.5)
    assert allowed_in_a_row(limiter, "c") == 10  # all at t=0.5, in bucket [0, 10)
    clock.advance(10.0)  # t=10.5: 95 % of that bucket is still in the window: estimate 9.5
    limiter.allow_request("someone-else")
    decision = limiter.allow_request("c")
    assert decision.allowed
    assert decision.remaining == 0
    assert not limiter.allow_request("c").allowed


def test_the_counter_forgets_a_client_two_windows_after_its_last_request() -> None:
    clock = FakeClock(start=0.0)
    limiter = counter(clock, limit=10, window=10.0)
    limiter.allow_request("c")  # t=0
    clock.advance(19.9)
    limiter.allow_request("other")
    assert limiter.tracked_clients == 2  # "c"'s bucket still weighs in (t - W, t]
    clock.advance(0.1)  # t=20: bucket [0, 10) has left every window
    limiter.allow_request("other")
    assert limiter.tracked_clients == 1


def test_counts_two_buckets_old_weigh_nothing() -> None:
    clock = FakeClock(start=0.0)
    limiter = counter(clock, limit=10, window=10.0)
    clock.advance(9.9)
    assert allowed_in_a_row(limiter, "c") == 10  # bucket [0, 10), at its very end
    clock.advance(10.6)  # t=20.5: bucket [0, 10) is two buckets back, out of every window
    assert allowed_in_a_row(limiter, "c") == 10


# --- sliding log: memory after a flood --------------------------------------------------------


def memory_held_after_a_flood(flood: int, survivors: int) -> int:
    """Bytes allocated since the start and still held, after ``flood`` clients came once and
    all but ``survivors`` of them went idle for a window (and one more request swept them)."""
    tracemalloc.start()
    try:
        clock = FakeClock(start=0.0)
        limiter = SlidingWindowLimiter(RateLimitPolicy(5, 10.0), clock)
        for n in range(flood):
            limiter.allow_request(f"client-{n}")
        clock.advance(5.0)
        for n in range(survivors):
            limiter.allow_request(f"client-{n}")
        clock.advance(5.5)
        limiter.allow_request("client-0")
        assert limiter.tracked_clients == survivors
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held


def test_a_flood_shrunk_to_a_quarter_gives_its_memory_back() -> None:
    # a flood of 1024 clients (the least that is rebuilt) down to exactly a quarter of it holds
    # about what those 256 clients would hold had there been no flood
    without_flood = memory_held_after_a_flood(256, 256)  # first: it bears one-time allocations
    assert memory_held_after_a_flood(1024, 256) < 1.2 * without_flood
