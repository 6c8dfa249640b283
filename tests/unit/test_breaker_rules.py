"""Rules of the breaker, its policy and its windows that planted bugs once slipped past (issue 16,
second round), written as the rules: what a caller or an operator sees, on a fake clock.
"""

from __future__ import annotations

import pytest

from adapters.clock.fake import FakeClock
from domain.breaker import (
    BreakerMode,
    BreakerPolicy,
    BreakerState,
    CallOutcome,
    CircuitBreaker,
)
from domain.breaker_window import CountWindow, TimeWindow

SUCCESS, FAILURE = CallOutcome.SUCCESS, CallOutcome.FAILURE


def call(breaker: CircuitBreaker, outcome: CallOutcome, seconds: float = 0.0) -> None:
    permit = breaker.allow_request()
    assert permit.allowed
    breaker.record(permit, outcome, seconds)


# --- the policy's bounds: each refusal names the setting, each edge inside is accepted --


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"sliding_window_size": 0}, "sliding_window_size must be at least 1"),
        ({"minimum_calls": 0}, "minimum_calls must be at least 1"),
        ({"slow_call_duration_seconds": -1.0}, "slow_call_duration_seconds must not be negative"),
        ({"recovery_backoff_multiplier": 0.5}, "recovery_backoff_multiplier must be at least 1"),
        ({"max_recovery_timeout_seconds": 0.0}, "max_recovery_timeout_seconds must be positive"),
        (
            {"recovery_backoff_multiplier": 2.0, "max_recovery_timeout_seconds": 10.0},
            "max_recovery_timeout_seconds must not be below recovery_timeout_seconds",
        ),
    ],
)
def test_a_refused_policy_names_its_setting(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        BreakerPolicy(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "edge",
    [
        {"failure_rate_threshold_percent": 0.5},
        {"slow_call_rate_threshold_percent": 0.5},
        {"max_recovery_timeout_seconds": 0.5, "recovery_timeout_seconds": 0.5},
        # without growth the cap is never used, so it may lie below the open time
        {"recovery_backoff_multiplier": 1.0, "max_recovery_timeout_seconds": 10.0},
        {"recovery_backoff_multiplier": 2.0, "max_recovery_timeout_seconds": 30.0},
    ],
)
def test_policy_accepts_every_value_inside_its_bounds(edge: dict[str, object]) -> None:
    BreakerPolicy(**edge)  # type: ignore[arg-type]


# --- growing open time --------------------------------------------------------------------


def test_open_time_grows_geometrically() -> None:
    policy = BreakerPolicy(
        recovery_timeout_seconds=1.0,
        recovery_backoff_multiplier=2.0,
        max_recovery_timeout_seconds=100.0,
    )
    assert [policy.open_seconds(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 32, 64]
    assert policy.open_seconds(8) == 100.0


@pytest.mark.parametrize(
    "policy",
    [
        BreakerPolicy(
            recovery_timeout_seconds=1.0,
            recovery_backoff_multiplier=1e200,
            max_recovery_timeout_seconds=1e202,
        ),
        BreakerPolicy(
            recovery_timeout_seconds=1e200,
            recovery_backoff_multiplier=2.0,
            max_recovery_timeout_seconds=1e201,
        ),
    ],
    ids=["huge multiplier", "huge times"],
)
def test_open_time_never_overflows_however_large_the_settings(policy: BreakerPolicy) -> None:
    base, cap = policy.recovery_timeout_seconds, policy.max_recovery_timeout_seconds
    times = [policy.open_seconds(n) for n in (1, 2, 3, 10, 100_000)]
    assert times[0] == base
    assert times[-1] == cap
    assert all(base <= t <= cap for t in times)


def test_without_growth_the_open_time_is_the_recovery_time_whatever_the_cap() -> None:
    policy = BreakerPolicy(recovery_timeout_seconds=30.0, max_recovery_timeout_seconds=10.0)
    assert [policy.open_seconds(n) for n in (1, 2, 5)] == [30.0, 30.0, 30.0]


# --- rates at their threshold -------------------------------------------------------------


def test_a_failure_rate_just_below_the_threshold_keeps_the_breaker_closed() -> None:
    policy = BreakerPolicy(
        mode=BreakerMode.FAILURE_RATE,
        failure_rate_threshold_percent=67.0,
        sliding_window_size=3,
        minimum_calls=3,
    )
    breaker = CircuitBreaker(policy, FakeClock())
    for outcome in (SUCCESS, FAILURE, FAILURE):
        call(breaker, outcome)
    assert breaker.state is BreakerState.CLOSED  # 66.7 % < 67 %


def test_a_slow_rate_just_below_the_threshold_keeps_the_breaker_closed() -> None:
    policy = BreakerPolicy(
        slow_call_duration_seconds=1.0,
        slow_call_rate_threshold_percent=67.0,
        sliding_window_size=3,
        minimum_calls=3,
    )
    breaker = CircuitBreaker(policy, FakeClock())
    for seconds in (0.5, 2.0, 2.0):
        call(breaker, SUCCESS, seconds)
    assert breaker.state is BreakerState.CLOSED  # 66.7 % < 67 %


def test_a_call_reported_without_its_duration_is_not_slow() -> None:
    policy = BreakerPolicy(sliding_window_size=1, minimum_calls=1, slow_call_duration_seconds=0.5)
    breaker = CircuitBreaker(policy, FakeClock())
    permit = breaker.allow_request()
    breaker.record(permit, SUCCESS)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().slow_calls == 0


# --- what an operator sees ------------------------------------------------------------------


def test_snapshot_gives_the_window_s_rates_in_percent() -> None:
    policy = BreakerPolicy(
        mode=BreakerMode.FAILURE_RATE,
        sliding_window_size=8,
        minimum_calls=8,
        slow_call_duration_seconds=1.0,
    )
    breaker = CircuitBreaker(policy, FakeClock())
    for outcome, seconds in [(FAILURE, 0.0), (SUCCESS, 2.0), (SUCCESS, 2.0), (SUCCESS, 0.0)]:
        call(breaker, outcome, seconds)
    snapshot = breaker.snapshot()
    assert (snapshot.calls, snapshot.failures, snapshot.slow_calls) == (4, 1, 2)
    assert (snapshot.failure_rate_percent, snapshot.slow_call_rate_percent) == (25.0, 50.0)


def test_snapshot_of_an_empty_window_shows_no_calls_and_zero_rates() -> None:
    policy = BreakerPolicy(mode=BreakerMode.FAILURE_RATE)
    snapshot = CircuitBreaker(policy, FakeClock()).snapshot()
    assert (snapshot.calls, snapshot.failures, snapshot.slow_calls) == (0, 0, 0)
    assert (snapshot.failure_rate_percent, snapshot.slow_call_rate_percent) == (0.0, 0.0)


def test_snapshot_of_a_breaker_without_a_window_shows_no_calls() -> None:
    breaker = CircuitBreaker(BreakerPolicy(), FakeClock())  # consecutive, no slow calls
    call(breaker, FAILURE)
    snapshot = breaker.snapshot()
    assert (snapshot.calls, snapshot.failures, snapshot.slow_calls) == (0, 0, 0)
    assert (snapshot.failure_rate_percent, snapshot.slow_call_rate_percent) == (0.0, 0.0)
    assert snapshot.consecutive_failures == 1


def test_a_disabled_breaker_s_permits_say_disabled() -> None:
    breaker = CircuitBreaker(BreakerPolicy(), FakeClock())
    breaker.disable()
    assert breaker.allow_request().state is BreakerState.DISABLED
    breaker.force_open()
    breaker.disable()
    permit = breaker.allow_request()
    assert (permit.allowed, permit.state) == (True, BreakerState.DISABLED)


# --- the windows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (CountWindow, "a count window holds at least one call"),
        (TimeWindow, "a time window spans at least one second"),
    ],
)
def test_an_empty_window_is_refused_with_a_reason(window: type, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        window(0)


def test_a_slow_success_leaving_the_count_window_takes_no_failure_with_it() -> None:
    window = CountWindow(2)
    window.record(0.0, failed=False, slow=True)
    window.record(0.0, failed=False, slow=False)
    window.record(0.0, failed=False, slow=False)
    figures = window.figures(0.0)
    assert (figures.calls, figures.failures, figures.slow_calls) == (2, 0, 0)


def test_every_call_of_a_second_leaves_the_time_window_together() -> None:
    window = TimeWindow(2)
    for at in (1000.1, 1000.2, 1000.3):
        window.record(at, failed=True, slow=True)
    figures = window.figures(1001.5)
    assert (figures.calls, figures.failures, figures.slow_calls) == (3, 3, 3)
    figures = window.figures(1002.0)
    assert (figures.calls, figures.failures, figures.slow_calls) == (0, 0, 0)


def test_a_call_after_a_quiet_spell_still_leaves_the_time_window() -> None:
    window = TimeWindow(3)
    window.record(1000.0, failed=True, slow=False)
    window.record(1010.0, failed=True, slow=False)  # long after: the window starts over
    assert window.figures(1013.0).calls == 0  # and that call leaves it on time too
    window.record(1020.0, failed=True, slow=False)
    assert window.figures(1022.9).calls == 1
