"""The sliding-window-log limiter: exact window edges, headers' numbers, eviction."""

import pytest

from adapters.clock.fake import FakeClock
from domain.rate_limit import RateLimitPolicy, SlidingWindowLimiter


def make_limiter(clock: FakeClock, limit: int = 3, window: float = 10.0) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(RateLimitPolicy(limit, window), clock)


def test_allows_up_to_the_limit_then_blocks() -> None:
    limiter = make_limiter(FakeClock(), limit=3)
    decisions = [limiter.allow_request("a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]


def test_clients_are_limited_separately() -> None:
    limiter = make_limiter(FakeClock(), limit=1)
    assert limiter.allow_request("a").allowed
    assert limiter.allow_request("b").allowed
    assert not limiter.allow_request("a").allowed


def test_request_exactly_at_t_minus_window_has_left_the_window() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, limit=1, window=10.0)
    limiter.allow_request("a")
    clock.advance(10.0)
    assert limiter.allow_request("a").allowed


def test_request_just_inside_the_window_still_counts() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, limit=1, window=10.0)
    limiter.allow_request("a")
    clock.advance(9.999)
    assert not limiter.allow_request("a").allowed


def test_window_slides_instead_of_resetting_in_buckets() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, limit=2, window=10.0)
    limiter.allow_request("a")  # t=0
    clock.advance(6.0)
    limiter.allow_request("a")  # t=6
    clock.advance(5.0)  # t=11: the first left, the second is still in
    assert limiter.allow_request("a").allowed
    assert not limiter.allow_request("a").allowed


def test_blocked_requests_are_not_counted() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, limit=1, window=10.0)
    limiter.allow_request("a")
    for _ in range(5):
        clock.advance(1.0)
        limiter.allow_request("a")
    clock.advance(5.0)  # 10 s after the only allowed request
    assert limiter.allow_request("a").allowed


def test_blocked_decision_says_when_a_request_will_be_allowed() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, limit=2, window=10.0)
    limiter.allow_request("a")
    clock.advance(3.0)
    limiter.allow_request("a")
    clock.advance(1.0)
    decision = limiter.allow_request("a")
    assert not decision.allowed
    assert decision.retry_after_seconds == pytest.approx(6.0)
    clock.advance(decision.retry_after_seconds)
    assert limiter.allow_request("a").allowed


def test_allowed_decision_reports_reset_of_the_oldest_request() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, limit=3, window=10.0)
    limiter.allow_request("a")
    clock.advance(4.0)
    decision = limiter.allow_request("a")
    assert decision.allowed
    assert decision.limit == 3
    assert decision.remaining == 1
    assert decision.reset_seconds == pytest.approx(6.0)
    assert decision.retry_after_seconds == 0.0


def test_idle_clients_are_evicted_after_a_window() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, limit=5, window=10.0)
    for n in range(1000):
        limiter.allow_request(f"flood-{n}")
    clock.advance(5.0)
    limiter.allow_request("steady")
    assert limiter.tracked_clients == 1001
    clock.advance(5.0)
    limiter.allow_request("steady")
    assert limiter.tracked_clients == 1


def test_active_client_is_kept_while_idle_ones_go() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, limit=1, window=10.0)
    limiter.allow_request("a")
    limiter.allow_request("b")
    clock.advance(9.0)
    limiter.allow_request("a")  # blocked: still counts from t=0
    clock.advance(1.0)
    limiter.allow_request("c")
    assert limiter.tracked_clients == 1


@pytest.mark.parametrize(("limit", "window"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_policy_rejects_nonsense(limit: int, window: float) -> None:
    with pytest.raises(ValueError, match="must"):
        RateLimitPolicy(limit, window)


def test_flood_clients_are_still_counted_after_the_table_is_rebuilt() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, limit=1, window=10.0)
    for n in range(5000):
        limiter.allow_request(f"flood-{n}")
    clock.advance(10.0)
    assert limiter.allow_request("after").allowed  # this decision evicts and rebuilds
    assert not limiter.allow_request("after").allowed
    assert limiter.tracked_clients == 1
