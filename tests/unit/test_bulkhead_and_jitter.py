"""The bulkhead's cap, and backoff jitter drawn from an injected random source."""

import random

import pytest

from domain.bulkhead import Bulkhead
from domain.retry import Jitter, RetryPolicy


def test_bulkhead_admits_up_to_its_limit_and_frees_on_release() -> None:
    bulkhead = Bulkhead(2)
    assert [bulkhead.try_acquire() for _ in range(3)] == [True, True, False]
    bulkhead.release()
    assert bulkhead.try_acquire()
    assert bulkhead.in_flight == 2


def test_bulkhead_refuses_a_release_without_acquire() -> None:
    with pytest.raises(RuntimeError, match="released more"):
        Bulkhead(1).release()


class Recording:
    """A random source that answers a fixed fraction of each range and records the ranges."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return a + (b - a) * self.fraction


def policy(jitter: Jitter) -> RetryPolicy:
    return RetryPolicy(max_retries=6, initial_backoff_seconds=1.0, backoff_multiplier=2.0,
                       max_backoff_seconds=5.0, jitter=jitter)  # fmt: skip


def test_no_jitter_is_the_exact_capped_schedule() -> None:
    rng = Recording(0.5)
    delays = [policy(Jitter.NONE).jittered_delay(n, 0.0, rng) for n in range(1, 6)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert rng.ranges == []


def test_full_jitter_draws_from_zero_to_the_capped_delay() -> None:
    rng = Recording(1.0)
    [policy(Jitter.FULL).jittered_delay(n, 0.0, rng) for n in range(1, 6)]
    assert rng.ranges == [(0, 1.0), (0, 2.0), (0, 4.0), (0, 5.0), (0, 5.0)]


def test_equal_jitter_keeps_half_and_draws_the_other_half() -> None:
    rng = Recording(0.0)
    delays = [policy(Jitter.EQUAL).jittered_delay(n, 0.0, rng) for n in range(1, 5)]
    assert delays == [0.5, 1.0, 2.0, 2.5]


def test_decorrelated_jitter_grows_from_the_previous_wait_below_the_cap() -> None:
    rng = Recording(1.0)
    p = policy(Jitter.DECORRELATED)
    previous = 0.0
    delays = []
    for n in range(1, 5):
        previous = p.jittered_delay(n, previous, rng)
        delays.append(previous)
    assert delays == [1.0, 3.0, 5.0, 5.0]
    assert rng.ranges == [(1.0, 1.0), (1.0, 3.0), (1.0, 5.0), (1.0, 5.0)]


@pytest.mark.parametrize("jitter", list(Jitter))
def test_capped_delays_stay_spread_and_within_the_cap(jitter: Jitter) -> None:
    rng = random.Random(3)
    p = policy(jitter)
    waits = [p.jittered_delay(6, 5.0, rng) for _ in range(200)]
    assert all(0 <= w <= 5.0 for w in waits)
    if jitter is not Jitter.NONE:
        assert len({round(w, 6) for w in waits}) > 150
