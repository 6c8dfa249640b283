"""The breaker's failure-rate mode, slow calls, growing open time and operator overrides.

Each rule of the README's "Breaker modes" section has a test here, driven by a fake clock.
"""

from __future__ import annotations

import pytest

from adapters.clock.fake import FakeClock
from application.forward import CircuitOpen, Forwarded
from domain.breaker import (
    BreakerMode,
    BreakerPolicy,
    BreakerState,
    CallOutcome,
    CircuitBreaker,
    WindowType,
)
from domain.breaker_window import CountWindow, TimeWindow
from domain.ports import UpstreamRequest
from tests.unit.conftest import MakeForward

SUCCESS, FAILURE = CallOutcome.SUCCESS, CallOutcome.FAILURE
OPEN, CLOSED, HALF_OPEN = BreakerState.OPEN, BreakerState.CLOSED, BreakerState.HALF_OPEN


def rate_breaker(clock: FakeClock, **policy: object) -> CircuitBreaker:
    settings: dict[str, object] = {
        "mode": BreakerMode.FAILURE_RATE,
        "failure_rate_threshold_percent": 50.0,
        "sliding_window_size": 10,
        "minimum_calls": 10,
        "recovery_timeout_seconds": 10.0,
    }
    settings.update(policy)
    return CircuitBreaker(BreakerPolicy(**settings), clock)  # type: ignore[arg-type]


def call(breaker: CircuitBreaker, outcome: CallOutcome, seconds: float = 0.0) -> bool:
    permit = breaker.allow_request()
    if permit.allowed:
        breaker.record(permit, outcome, seconds)
    return permit.allowed


def calls(breaker: CircuitBreaker, *outcomes: CallOutcome) -> None:
    for outcome in outcomes:
        call(breaker, outcome)


# --- failure-rate mode, count window -----------------------------------------------------------


def test_failure_rate_mode_never_opens_below_the_minimum_calls() -> None:
    breaker = rate_breaker(FakeClock(), minimum_calls=10)
    calls(breaker, *[FAILURE] * 9)
    assert breaker.state is CLOSED
    call(breaker, FAILURE)
    assert breaker.state is OPEN


@pytest.mark.parametrize(("failures", "state"), [(4, CLOSED), (5, OPEN)])
def test_failure_rate_mode_opens_when_the_rate_reaches_the_threshold(
    failures: int, state: BreakerState
) -> None:
    breaker = rate_breaker(FakeClock(), failure_rate_threshold_percent=50.0)
    calls(breaker, *[SUCCESS] * (10 - failures), *[FAILURE] * failures)
    assert breaker.state is state


def test_failure_rate_mode_ignores_failures_in_a_row_below_the_rate() -> None:
    breaker = rate_breaker(
        FakeClock(), failure_threshold=2, sliding_window_size=20, minimum_calls=20
    )
    calls(breaker, *[SUCCESS, SUCCESS, SUCCESS, FAILURE, FAILURE] * 4)
    assert breaker.state is CLOSED  # runs of two failures, but 8 of 20 is 40 % < 50 %


def test_a_backend_failing_forty_percent_without_runs_opens_at_a_forty_percent_threshold() -> None:
    breaker = rate_breaker(FakeClock(), failure_rate_threshold_percent=40.0)
    calls(breaker, *[SUCCESS, FAILURE, SUCCESS, FAILURE, SUCCESS] * 2)
    assert breaker.state is OPEN


def test_count_window_forgets_the_calls_that_slid_out() -> None:
    breaker = rate_breaker(
        FakeClock(), sliding_window_size=4, minimum_calls=4, failure_rate_threshold_percent=75.0
    )
    calls(breaker, FAILURE, SUCCESS, SUCCESS, SUCCESS, SUCCESS)
    snapshot = breaker.snapshot()
    assert (snapshot.calls, snapshot.failures) == (4, 0)
    calls(breaker, FAILURE, FAILURE)
    assert breaker.state is CLOSED  # S S F F: 50 %
    call(breaker, FAILURE)
    assert breaker.state is OPEN  # S F F F: 75 %


def test_count_window_minimum_is_at_most_the_window() -> None:
    breaker = rate_breaker(FakeClock(), sliding_window_size=5, minimum_calls=20)
    assert breaker.policy.effective_minimum_calls == 5
    calls(breaker, *[FAILURE] * 5)
    assert breaker.state is OPEN


def test_closing_empties_the_window() -> None:
    clock = FakeClock()
    breaker = rate_breaker(clock, sliding_window_size=4, minimum_calls=4)
    calls(breaker, SUCCESS, FAILURE, FAILURE, FAILURE)
    assert breaker.state is OPEN
    clock.advance(10.0)
    call(breaker, SUCCESS)
    assert breaker.state is CLOSED
    assert breaker.snapshot().calls == 0
    calls(breaker, FAILURE, FAILURE, FAILURE)
    assert breaker.state is CLOSED  # three calls: below the minimum of four again


# --- failure-rate mode, time window ------------------------------------------------------------


def test_time_window_counts_only_the_last_seconds() -> None:
    clock = FakeClock(1000.0)
    breaker = rate_breaker(
        clock, sliding_window_type=WindowType.TIME, sliding_window_size=10, minimum_calls=4
    )
    calls(breaker, FAILURE, FAILURE, FAILURE)
    clock.advance(10.0)
    call(breaker, FAILURE)
    assert breaker.state is CLOSED  # the first three left the window: one call in it
    clock.advance(9.0)
    calls(breaker, FAILURE, FAILURE)
    assert breaker.state is CLOSED
    call(breaker, FAILURE)
    assert breaker.state is OPEN


def test_time_window_buckets_are_whole_seconds() -> None:
    window = TimeWindow(2)
    window.record(1000.9, failed=True, slow=False)
    assert window.figures(1001.99).calls == 1
    assert window.figures(1002.0).calls == 0


def test_time_window_forgets_everything_after_a_long_quiet_spell() -> None:
    window = TimeWindow(3)
    for second in range(5):
        window.record(1000.0 + second, failed=second % 2 == 0, slow=True)
    assert window.figures(1004.5).calls == 3
    assert window.figures(2000.0).calls == 0
    window.record(2000.2, failed=True, slow=False)
    figures = window.figures(2000.3)
    assert (figures.calls, figures.failures, figures.slow_calls) == (1, 1, 0)


def test_count_window_subtracts_what_it_overwrites() -> None:
    window = CountWindow(3)
    for failed, slow in [(True, True), (False, True), (True, False), (False, False)]:
        window.record(0.0, failed, slow)
    figures = window.figures(0.0)
    assert (figures.calls, figures.failures, figures.slow_calls) == (3, 1, 1)


# --- slow calls ------------------------------------------------------------------------------


def test_slow_successes_count_toward_the_slow_rate_not_the_failure_rate() -> None:
    breaker = rate_breaker(
        FakeClock(),
        sliding_window_size=4,
        minimum_calls=4,
        slow_call_duration_seconds=1.0,
        slow_call_rate_threshold_percent=100.0,
    )
    call(breaker, FAILURE)
    for _ in range(3):
        call(breaker, SUCCESS, seconds=2.0)
    snapshot = breaker.snapshot()
    assert (snapshot.failures, snapshot.slow_calls) == (1, 3)
    assert breaker.state is CLOSED  # failures 25 % < 50 %, slow 75 % < 100 %


def test_slow_rate_opens_the_breaker_in_failure_rate_mode() -> None:
    breaker = rate_breaker(
        FakeClock(),
        sliding_window_size=4,
        minimum_calls=4,
        slow_call_duration_seconds=1.0,
        slow_call_rate_threshold_percent=50.0,
    )
    calls(breaker, SUCCESS, SUCCESS)
    call(breaker, SUCCESS, seconds=1.5)
    assert breaker.state is CLOSED
    call(breaker, SUCCESS, seconds=1.5)
    assert breaker.state is OPEN


def test_slow_rate_opens_the_breaker_in_consecutive_mode_too() -> None:
    policy = BreakerPolicy(
        failure_threshold=5, sliding_window_size=4, minimum_calls=4, slow_call_duration_seconds=1.0
    )
    breaker = CircuitBreaker(policy, FakeClock())
    for _ in range(3):
        call(breaker, SUCCESS, seconds=3.0)
    assert breaker.state is CLOSED
    call(breaker, SUCCESS, seconds=3.0)
    assert breaker.state is OPEN


def test_a_call_exactly_at_the_slow_duration_is_not_slow() -> None:
    policy = BreakerPolicy(sliding_window_size=1, minimum_calls=1, slow_call_duration_seconds=1.0)
    breaker = CircuitBreaker(policy, FakeClock())
    call(breaker, SUCCESS, seconds=1.0)
    assert breaker.state is CLOSED
    call(breaker, SUCCESS, seconds=1.001)
    assert breaker.state is OPEN


def test_slow_calls_are_off_by_default() -> None:
    breaker = CircuitBreaker(BreakerPolicy(), FakeClock())
    for _ in range(200):
        call(breaker, SUCCESS, seconds=3600.0)
    assert breaker.state is CLOSED


def test_a_slow_trial_reopens_the_breaker() -> None:
    clock = FakeClock()
    policy = BreakerPolicy(
        failure_threshold=1, recovery_timeout_seconds=5.0, slow_call_duration_seconds=1.0
    )
    breaker = CircuitBreaker(policy, clock)
    call(breaker, FAILURE)
    clock.advance(5.0)
    call(breaker, SUCCESS, seconds=2.0)
    assert breaker.state is OPEN
    clock.advance(5.0)
    call(breaker, SUCCESS, seconds=0.5)
    assert breaker.state is CLOSED


# --- growing open time -----------------------------------------------------------------------


def fail_trial(breaker: CircuitBreaker, clock: FakeClock) -> float:
    """Wait out the open time, fail the trial, and return the new open time."""
    clock.advance(breaker.seconds_until_half_open())
    assert breaker.state is HALF_OPEN
    call(breaker, FAILURE)
    return breaker.allow_request().retry_after_seconds


def test_each_failed_trial_multiplies_the_open_time_up_to_the_cap() -> None:
    clock = FakeClock()
    policy = BreakerPolicy(
        failure_threshold=1,
        recovery_timeout_seconds=10.0,
        recovery_backoff_multiplier=2.0,
        max_recovery_timeout_seconds=35.0,
    )
    breaker = CircuitBreaker(policy, clock)
    call(breaker, FAILURE)
    assert breaker.allow_request().retry_after_seconds == 10.0
    assert [fail_trial(breaker, clock) for _ in range(4)] == [20.0, 35.0, 35.0, 35.0]
    assert breaker.snapshot().openings_in_a_row == 5


def test_closing_resets_the_open_time() -> None:
    clock = FakeClock()
    policy = BreakerPolicy(
        failure_threshold=1,
        recovery_timeout_seconds=10.0,
        recovery_backoff_multiplier=3.0,
        max_recovery_timeout_seconds=300.0,
    )
    breaker = CircuitBreaker(policy, clock)
    call(breaker, FAILURE)
    assert fail_trial(breaker, clock) == 30.0
    clock.advance(30.0)
    call(breaker, SUCCESS)
    assert breaker.state is CLOSED
    assert breaker.current_open_seconds() == 10.0
    call(breaker, FAILURE)
    assert breaker.allow_request().retry_after_seconds == 10.0


def test_the_default_multiplier_keeps_the_open_time_fixed() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        BreakerPolicy(failure_threshold=1, recovery_timeout_seconds=7.0), clock
    )
    call(breaker, FAILURE)
    assert [fail_trial(breaker, clock) for _ in range(3)] == [7.0, 7.0, 7.0]


def test_current_open_time_says_what_a_failed_trial_would_bring() -> None:
    clock = FakeClock()
    policy = BreakerPolicy(
        failure_threshold=1, recovery_timeout_seconds=10.0, recovery_backoff_multiplier=2.0
    )
    breaker = CircuitBreaker(policy, clock)
    assert breaker.current_open_seconds() == 10.0
    call(breaker, FAILURE)
    clock.advance(4.0)
    assert (breaker.current_open_seconds(), breaker.seconds_until_half_open()) == (10.0, 6.0)
    clock.advance(6.0)
    assert breaker.state is HALF_OPEN
    assert breaker.current_open_seconds() == 20.0


def test_open_time_of_a_very_long_run_is_the_cap_without_overflow() -> None:
    policy = BreakerPolicy(recovery_backoff_multiplier=10.0, max_recovery_timeout_seconds=300.0)
    assert policy.open_seconds(1) == 30.0
    assert policy.open_seconds(2) == 300.0
    assert policy.open_seconds(100_000) == 300.0


# --- operator overrides ----------------------------------------------------------------------


def test_forced_open_refuses_every_call_whatever_the_time() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(recovery_timeout_seconds=1.0), clock)
    breaker.force_open()
    clock.advance(10_000.0)
    permit = breaker.allow_request()
    assert (permit.allowed, permit.state) == (False, BreakerState.FORCED_OPEN)
    assert breaker.state is BreakerState.FORCED_OPEN


def test_forcing_open_makes_calls_in_flight_stale() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1), FakeClock())
    in_flight = breaker.allow_request()
    breaker.force_open()
    breaker.record(in_flight, SUCCESS)
    assert breaker.state is BreakerState.FORCED_OPEN


def test_disabled_admits_every_call_and_records_nothing() -> None:
    breaker = rate_breaker(FakeClock(), minimum_calls=1, sliding_window_size=1)
    breaker.disable()
    assert all(call(breaker, FAILURE) for _ in range(50))
    assert breaker.state is BreakerState.DISABLED
    assert breaker.snapshot().calls == 0


def test_reset_closes_with_empty_counters() -> None:
    clock = FakeClock()
    breaker = rate_breaker(
        clock, sliding_window_size=4, minimum_calls=4, recovery_backoff_multiplier=2.0
    )
    calls(breaker, SUCCESS, FAILURE, FAILURE, FAILURE)
    assert fail_trial(breaker, clock) == 20.0
    breaker.reset()
    snapshot = breaker.snapshot()
    assert snapshot.state is CLOSED
    assert (snapshot.calls, snapshot.openings_in_a_row, snapshot.open_seconds) == (0, 0, 10.0)
    calls(breaker, FAILURE, FAILURE, FAILURE)
    assert breaker.state is CLOSED


def test_reset_while_closed_empties_the_counters_too() -> None:
    breaker = rate_breaker(FakeClock(), sliding_window_size=4, minimum_calls=4)
    calls(breaker, FAILURE, FAILURE, FAILURE)
    breaker.reset()
    call(breaker, FAILURE)
    assert breaker.state is CLOSED
    assert breaker.snapshot().calls == 1


def test_overrides_are_reported_as_transitions() -> None:
    seen: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(BreakerPolicy(), FakeClock(), lambda a, b: seen.append((a, b)))
    breaker.force_open()
    breaker.disable()
    breaker.reset()
    assert seen == [
        (CLOSED, BreakerState.FORCED_OPEN),
        (BreakerState.FORCED_OPEN, BreakerState.DISABLED),
        (BreakerState.DISABLED, CLOSED),
    ]


# --- the policy refuses nonsense -------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_rate_threshold_percent": 0.0},
        {"failure_rate_threshold_percent": 101.0},
        {"slow_call_rate_threshold_percent": 0.0},
        {"sliding_window_size": 0},
        {"minimum_calls": 0},
        {"slow_call_duration_seconds": -1.0},
        {"recovery_backoff_multiplier": 0.5},
        {"max_recovery_timeout_seconds": 0.0},
        {"recovery_backoff_multiplier": 2.0, "max_recovery_timeout_seconds": 10.0},
    ],
)
def test_policy_refuses_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        BreakerPolicy(**bad)  # type: ignore[arg-type]


# --- the use case reports each attempt's duration -------------------------------------------


async def test_slow_answers_open_the_breaker_through_the_use_case(
    make_forward: MakeForward,
) -> None:
    policy = BreakerPolicy(sliding_window_size=2, minimum_calls=2, slow_call_duration_seconds=1.0)
    forward, upstream, _ = make_forward(elapse=1.5, breaker_policy=policy)
    request = UpstreamRequest("GET", "/flaky-data", "", (), b"")
    first, second = await forward("c", request), await forward("c", request)
    assert isinstance(first, Forwarded)
    assert isinstance(second, Forwarded)
    assert isinstance(await forward("c", request), CircuitOpen)
    assert len(upstream.calls) == 2


async def test_quick_answers_are_not_slow_calls(make_forward: MakeForward) -> None:
    policy = BreakerPolicy(sliding_window_size=2, minimum_calls=2, slow_call_duration_seconds=1.0)
    forward, _, _ = make_forward(elapse=0.5, breaker_policy=policy)
    request = UpstreamRequest("GET", "/flaky-data", "", (), b"")
    for _ in range(5):
        assert isinstance(await forward("c", request), Forwarded)
