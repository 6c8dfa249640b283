"""Edges of the domain's rules that a mutation run showed no test pinned down (issue 16).

Exact refusal messages (a bad setting must be named), the boundaries of what each policy
accepts, the breaker's permits, the counter's formulas, and the retry budget's window edge.
"""

from __future__ import annotations

import re

import pytest

from adapters.clock.fake import FakeClock
from domain.breaker import BreakerPolicy, BreakerState, CallOutcome, CircuitBreaker
from domain.bulkhead import Bulkhead
from domain.rate_limit import (
    RateLimitDecision,
    RateLimitPolicy,
    SlidingWindowLimiter,
    counter_decision,
)
from domain.retry import Jitter, RetryPolicy
from domain.retry_budget import RetryBudget, RetryBudgetPolicy

# --- refusals name what is wrong ------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: BreakerPolicy(failure_threshold=0), "failure_threshold must be at least 1"),
        (lambda: BreakerPolicy(recovery_timeout_seconds=0), "recovery_timeout_seconds must be positive"),  # noqa: E501
        (lambda: BreakerPolicy(half_open_max_calls=0), "half_open_max_calls must be at least 1"),
        (lambda: Bulkhead(0), "limit must be at least 1"),
        (lambda: RateLimitPolicy(0, 1.0), "requests_per_window must be at least 1"),
        (lambda: RateLimitPolicy(1, 0.0), "window_seconds must be positive"),
        (lambda: RetryPolicy(max_retries=-1), "max_retries must not be negative"),
        (lambda: RetryPolicy(initial_backoff_seconds=-0.1), "initial_backoff_seconds must not be negative"),  # noqa: E501
        (lambda: RetryPolicy(backoff_multiplier=0.9), "backoff_multiplier must be at least 1"),
        (lambda: RetryPolicy(max_backoff_seconds=-0.1), "max_backoff_seconds must not be negative"),
        (lambda: RetryPolicy().next_delay(0), "retry_number starts at 1"),
        (lambda: RetryBudgetPolicy(percent=-1), "percent must not be negative"),
        (lambda: RetryBudgetPolicy(min_retries_per_second=-1), "min_retries_per_second must not be negative"),  # noqa: E501
        (lambda: RetryBudgetPolicy(window_seconds=0), "window_seconds must be positive"),
    ],
)  # fmt: skip
def test_a_refused_value_is_named_in_the_message(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build()  # type: ignore[operator]


def test_releasing_an_idle_bulkhead_says_so() -> None:
    with pytest.raises(RuntimeError, match=r"^released more than acquired$"):
        Bulkhead(1).release()


def test_zero_waits_and_a_short_budget_window_are_valid() -> None:
    assert RetryPolicy(initial_backoff_seconds=0.0, max_backoff_seconds=0.0).schedule() == (
        0.0,
        0.0,
        0.0,
    )
    assert RetryPolicy(initial_backoff_seconds=0.5, max_backoff_seconds=0.5).next_delay(3) == 0.5
    assert RetryBudgetPolicy(window_seconds=0.5).window_seconds == 0.5


# --- jitter -------------------------------------------------------------------------------


class TopOfRange:
    def __init__(self) -> None:
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return b


def test_equal_jitter_adds_a_draw_from_the_other_half() -> None:
    rng = TopOfRange()
    policy = RetryPolicy(initial_backoff_seconds=1.0, jitter=Jitter.EQUAL)
    assert [policy.jittered_delay(n, 0.0, rng) for n in (1, 2)] == [1.0, 2.0]
    assert rng.ranges == [(0.0, 0.5), (0.0, 1.0)]


# --- breaker permits --------------------------------------------------------------------------


def test_every_permit_says_which_state_decided_it() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(1, 10.0, 1), clock)
    assert breaker.allow_request().state is BreakerState.CLOSED
    breaker.record(breaker.allow_request(), CallOutcome.FAILURE)
    assert breaker.allow_request().state is BreakerState.OPEN
    clock.advance(10.0)
    trial = breaker.allow_request()
    assert (trial.allowed, trial.trial, trial.state) == (True, True, BreakerState.HALF_OPEN)
    refused = breaker.allow_request()
    assert (refused.allowed, refused.state) == (False, BreakerState.HALF_OPEN)
    breaker.record(trial, CallOutcome.SUCCESS)
    assert breaker.allow_request().state is BreakerState.CLOSED


def test_seconds_until_half_open_goes_below_one_second() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(1, 10.0, 1), clock)
    breaker.record(breaker.allow_request(), CallOutcome.FAILURE)
    clock.advance(9.75)
    assert breaker.seconds_until_half_open() == pytest.approx(0.25)


# --- sliding log decisions ------------------------------------------------------------------


def test_sliding_log_decisions_carry_the_limit_and_the_reset() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimitPolicy(2, 10.0), clock)
    assert limiter.allow_request("c") == RateLimitDecision(True, 2, 1, 10.0, 0.0)
    clock.advance(4.0)
    assert limiter.allow_request("c") == RateLimitDecision(True, 2, 0, 6.0, 0.0)
    clock.advance(1.0)
    assert limiter.allow_request("c") == RateLimitDecision(False, 2, 0, 5.0, 5.0)


# --- the sliding counter's formulas ---------------------------------------------------------
# window 10 s, limit 10; ``previous`` weighs (10 - elapsed) / 10


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "decision"),
    [
        # 10 x 0.5 + 2 = 7 < 10: allowed, 2 left after this one, the bucket ends in 5 s
        (10.0, 2.0, 5.0, RateLimitDecision(True, 10, 2, 5.0, 0.0)),
        # 10 x 0.95 = 9.5 < 10: allowed, none left after it
        (10.0, 0.0, 0.5, RateLimitDecision(True, 10, 0, 9.5, 0.0)),
        # 10 x 0.5 + 5 = 10: not below the limit
        (10.0, 5.0, 5.0, RateLimitDecision(False, 10, 0, 0.0, 0.0)),
        # 10 x 0.55 + 5 = 10.5: allowed once the previous bucket weighs 5, in 0.5 s
        (10.0, 5.0, 4.5, RateLimitDecision(False, 10, 0, 0.5, 0.5)),
        # 10 x 0.8 + 5 = 13: in 3 s
        (10.0, 5.0, 2.0, RateLimitDecision(False, 10, 0, 3.0, 3.0)),
        # the current bucket is full: wait for the next one (6 s)
        (0.0, 10.0, 4.0, RateLimitDecision(False, 10, 0, 6.0, 6.0)),
        # twice the limit counted (the limit was lowered): the next bucket, then half of it
        (0.0, 20.0, 4.0, RateLimitDecision(False, 10, 0, 11.0, 11.0)),
    ],
)
def test_counter_decision(
    previous: float, current: float, elapsed: float, decision: RateLimitDecision
) -> None:
    result, counted = counter_decision(previous, current, elapsed, 10.0, 10)
    assert result.allowed is decision.allowed
    assert (result.limit, result.remaining) == (decision.limit, decision.remaining)
    assert result.reset_seconds == pytest.approx(decision.reset_seconds)
    assert result.retry_after_seconds == pytest.approx(decision.retry_after_seconds)
    assert counted == (1 if decision.allowed else 0)


# --- the retry budget's window edge ---------------------------------------------------------


def test_a_retry_exactly_a_window_old_no_longer_counts() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryBudgetPolicy(percent=0, min_retries_per_second=0.1), clock)
    assert budget.try_spend()  # the floor: 0.1/s x 10 s = 1 retry
    assert budget.retries_available() == pytest.approx(0.0)
    clock.advance(10.0)
    assert budget.retries_available() == pytest.approx(1.0)


def test_a_breaker_closed_again_needs_the_full_threshold_of_failures_to_reopen() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(3, 10.0, 1), clock)
    for _ in range(3):
        breaker.record(breaker.allow_request(), CallOutcome.FAILURE)
    clock.advance(10.0)
    breaker.record(breaker.allow_request(), CallOutcome.SUCCESS)
    assert (breaker.state, breaker.consecutive_failures) == (BreakerState.CLOSED, 0)
    for _ in range(2):
        breaker.record(breaker.allow_request(), CallOutcome.FAILURE)
    assert breaker.state is BreakerState.CLOSED
    breaker.record(breaker.allow_request(), CallOutcome.FAILURE)
    assert breaker.state is BreakerState.OPEN


def test_a_late_trial_from_an_earlier_half_open_cannot_close_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(1, 10.0, 2), clock)
    breaker.record(breaker.allow_request(), CallOutcome.FAILURE)
    clock.advance(10.0)
    failing, slow = breaker.allow_request(), breaker.allow_request()
    breaker.record(failing, CallOutcome.FAILURE)  # reopened
    clock.advance(10.0)
    assert breaker.state is BreakerState.HALF_OPEN  # a second HALF_OPEN period
    breaker.record(slow, CallOutcome.SUCCESS)  # the trial of the first period ends only now
    assert breaker.state is BreakerState.HALF_OPEN


def test_the_outcome_of_a_refused_call_changes_nothing() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(1, 10.0, 1), clock)
    breaker.record(breaker.allow_request(), CallOutcome.FAILURE)
    clock.advance(10.0)
    trial = breaker.allow_request()
    refused = breaker.allow_request()  # the only trial slot is taken
    assert not refused.allowed
    breaker.record(refused, CallOutcome.FAILURE)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record(trial, CallOutcome.SUCCESS)
    assert breaker.state is BreakerState.CLOSED


def test_an_abandoned_trial_frees_exactly_its_own_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(1, 10.0, 2), clock)
    breaker.record(breaker.allow_request(), CallOutcome.FAILURE)
    clock.advance(10.0)
    first, _second = breaker.allow_request(), breaker.allow_request()
    breaker.record(first, CallOutcome.ABANDONED)
    assert [breaker.allow_request().allowed for _ in range(2)] == [True, False]
