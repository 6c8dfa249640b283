"""The circuit breaker's transitions, driven by a fake clock."""

import pytest

from adapters.clock.fake import FakeClock
from domain.breaker import BreakerPolicy, BreakerState, CallOutcome, CircuitBreaker

SUCCESS, FAILURE, ABANDONED = CallOutcome.SUCCESS, CallOutcome.FAILURE, CallOutcome.ABANDONED


def make_breaker(
    clock: FakeClock, threshold: int = 3, recovery: float = 10.0, trials: int = 1
) -> tuple[CircuitBreaker, list[tuple[BreakerState, BreakerState]]]:
    transitions: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        BreakerPolicy(threshold, recovery, trials),
        clock,
        on_transition=lambda a, b: transitions.append((a, b)),
    )
    return breaker, transitions


def call(breaker: CircuitBreaker, outcome: CallOutcome) -> bool:
    permit = breaker.allow_request()
    if permit.allowed:
        breaker.record(permit, outcome)
    return permit.allowed


def trip(breaker: CircuitBreaker) -> None:
    while breaker.state is not BreakerState.OPEN:
        call(breaker, FAILURE)


def test_starts_closed_and_admits() -> None:
    breaker, _ = make_breaker(FakeClock())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow_request().allowed


def test_opens_when_consecutive_failures_reach_threshold() -> None:
    breaker, transitions = make_breaker(FakeClock(), threshold=3)
    call(breaker, FAILURE)
    call(breaker, FAILURE)
    assert breaker.state is BreakerState.CLOSED
    call(breaker, FAILURE)
    assert breaker.state is BreakerState.OPEN
    assert transitions == [(BreakerState.CLOSED, BreakerState.OPEN)]


def test_success_resets_the_failure_count() -> None:
    breaker, _ = make_breaker(FakeClock(), threshold=3)
    for outcome in (FAILURE, FAILURE, SUCCESS, FAILURE, FAILURE):
        call(breaker, outcome)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2


def test_open_refuses_with_time_until_half_open() -> None:
    clock = FakeClock()
    breaker, _ = make_breaker(clock, threshold=1, recovery=10.0)
    trip(breaker)
    clock.advance(4.0)
    permit = breaker.allow_request()
    assert not permit.allowed
    assert permit.state is BreakerState.OPEN
    assert permit.retry_after_seconds == pytest.approx(6.0)


def test_moves_to_half_open_exactly_when_recovery_timeout_has_passed() -> None:
    clock = FakeClock()
    breaker, _ = make_breaker(clock, threshold=1, recovery=10.0)
    trip(breaker)
    clock.advance(9.999)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.001)
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_admits_only_configured_trials() -> None:
    clock = FakeClock()
    breaker, _ = make_breaker(clock, threshold=1, recovery=5.0, trials=2)
    trip(breaker)
    clock.advance(5.0)
    permits = [breaker.allow_request() for _ in range(5)]
    assert [p.allowed for p in permits] == [True, True, False, False, False]
    assert all(p.trial for p in permits[:2])


def test_trial_success_closes() -> None:
    clock = FakeClock()
    breaker, transitions = make_breaker(clock, threshold=1, recovery=5.0)
    trip(breaker)
    clock.advance(5.0)
    assert call(breaker, SUCCESS)
    assert breaker.state is BreakerState.CLOSED
    assert transitions == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_trial_failure_reopens_with_a_fresh_recovery_timer() -> None:
    clock = FakeClock()
    breaker, _ = make_breaker(clock, threshold=1, recovery=5.0)
    trip(breaker)
    clock.advance(7.0)
    assert call(breaker, FAILURE)
    assert breaker.state is BreakerState.OPEN
    clock.advance(4.9)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN


def test_abandoned_trial_frees_its_permit_and_changes_nothing() -> None:
    clock = FakeClock()
    breaker, _ = make_breaker(clock, threshold=1, recovery=5.0)
    trip(breaker)
    clock.advance(5.0)
    permit = breaker.allow_request()
    assert not breaker.allow_request().allowed
    breaker.record(permit, ABANDONED)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow_request().allowed


def test_late_success_from_before_opening_does_not_close() -> None:
    clock = FakeClock()
    breaker, _ = make_breaker(clock, threshold=2)
    slow = breaker.allow_request()
    call(breaker, FAILURE)
    call(breaker, FAILURE)
    assert breaker.state is BreakerState.OPEN
    breaker.record(slow, SUCCESS)
    assert breaker.state is BreakerState.OPEN


def test_late_trial_outcome_after_reopening_is_ignored() -> None:
    clock = FakeClock()
    breaker, _ = make_breaker(clock, threshold=1, recovery=5.0, trials=2)
    trip(breaker)
    clock.advance(5.0)
    first, second = breaker.allow_request(), breaker.allow_request()
    breaker.record(first, FAILURE)
    breaker.record(second, SUCCESS)
    assert breaker.state is BreakerState.OPEN


def test_refused_permit_records_nothing() -> None:
    clock = FakeClock()
    breaker, _ = make_breaker(clock, threshold=1, recovery=5.0)
    trip(breaker)
    refused = breaker.allow_request()
    breaker.record(refused, SUCCESS)
    assert breaker.state is BreakerState.OPEN


def test_seconds_until_half_open_counts_down() -> None:
    clock = FakeClock()
    breaker, _ = make_breaker(clock, threshold=1, recovery=10.0)
    assert breaker.seconds_until_half_open() == 0.0
    trip(breaker)
    clock.advance(3.0)
    assert breaker.seconds_until_half_open() == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("threshold", "recovery", "trials"), [(0, 1.0, 1), (1, 0.0, 1), (1, 1.0, 0), (-1, 1.0, 1)]
)
def test_policy_rejects_nonsense(threshold: int, recovery: float, trials: int) -> None:
    with pytest.raises(ValueError, match="must"):
        BreakerPolicy(threshold, recovery, trials)
