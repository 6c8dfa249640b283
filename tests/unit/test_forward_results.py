"""Every way the use case ends a request, checked as the whole result value it returns.

The HTTP adapter turns these values into answers (status, problem fields, RateLimit headers), so
each field is part of the rule: how many attempts were made, why the last one failed, what
stopped the retrying, the breaker's state, the Retry-After, and the client's rate-limit decision.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from adapters.clock.fake import FakeClock
from adapters.metrics.counters import RouteCounters
from application.forward import (
    CircuitOpen,
    Forwarded,
    ForwardRequest,
    RateLimited,
    Saturated,
    UpstreamFailed,
)
from domain.breaker import BreakerState, CallOutcome
from domain.bulkhead import Bulkhead
from domain.errors import UpstreamUnavailable
from domain.ports import UpstreamRequest, UpstreamResponse
from domain.rate_limit import RateLimitDecision
from domain.retry import RetryPolicy
from domain.retry_budget import RetryBudget, RetryBudgetPolicy
from tests.unit.conftest import MakeForward

REQUEST = UpstreamRequest("GET", "/flaky-data")
# a limit of 100 per 60 s: the first request of a client leaves 99, reset in a full window
FIRST_DECISION = RateLimitDecision(True, 100, 99, 60.0, 0.0)


def failed(
    reason: str,
    attempts: int,
    stopped_by: str,
    state: BreakerState,
    retry_after_seconds: float | None,
    rate_limit: RateLimitDecision | None,
) -> UpstreamFailed:
    """The expected ``UpstreamFailed``, built by field name (new fields with defaults fit in)."""
    return UpstreamFailed(
        reason=reason,
        attempts=attempts,
        stopped_by=stopped_by,
        breaker_state=state,
        retry_after_seconds=retry_after_seconds,
        rate_limit=rate_limit,
    )


class SleeperThatActs:
    """Sleeps on the fake clock and, during each wait, does what another request would do."""

    def __init__(self, clock: FakeClock, during_wait: Callable[[], object]) -> None:
        self.clock = clock
        self.during_wait = during_wait

    async def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.during_wait()


def acting(
    forward: ForwardRequest, clock: FakeClock, during_wait: Callable[[], object]
) -> ForwardRequest:
    """The same route, with a sleeper that does ``during_wait`` while the request waits."""
    return ForwardRequest(
        forward.route, clock, SleeperThatActs(clock, during_wait), RouteCounters("test")
    )


async def test_a_success_carries_the_attempts_and_the_clients_rate_limit(
    make_forward: MakeForward,
) -> None:
    answer = UpstreamResponse(200, (), b"ok")
    forward, _, _ = make_forward(503, answer, limit=100)
    assert await forward("c", REQUEST) == Forwarded(
        response=answer, attempts=2, rate_limit=FIRST_DECISION
    )


async def test_each_client_is_limited_by_its_own_count(make_forward: MakeForward) -> None:
    forward, upstream, _ = make_forward(limit=1)
    assert isinstance(await forward("a", REQUEST), Forwarded)
    assert isinstance(await forward("b", REQUEST), Forwarded)
    assert isinstance(await forward("a", REQUEST), RateLimited)
    assert len(upstream.calls) == 2


async def test_retries_exhausted(make_forward: MakeForward) -> None:
    forward, _, _ = make_forward(default=503, limit=100, threshold=100)
    assert await forward("c", REQUEST) == failed(
        "http_503", 4, "retries_exhausted", BreakerState.CLOSED, None, FIRST_DECISION
    )


async def test_breaker_opening_on_an_attempt_stops_the_retries(
    make_forward: MakeForward,
) -> None:
    forward, _, counters = make_forward(default=503, limit=100, threshold=2, recovery=30.0)
    assert await forward("c", REQUEST) == failed(
        "http_503", 2, "circuit_open", BreakerState.OPEN, 30.0, FIRST_DECISION
    )
    assert counters.circuit_rejections == 0  # not a refusal: there were attempts
    assert counters.retries_stopped_by_breaker == 1


async def test_breaker_opened_by_others_during_the_wait_stops_the_retry(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    planned, upstream, _ = make_forward(default=503, limit=100, threshold=3, recovery=30.0)
    breaker = planned.route.breaker

    def others_fail() -> None:
        while breaker.state is BreakerState.CLOSED:
            breaker.record(breaker.allow_request(), CallOutcome.FAILURE)

    forward = acting(planned, clock, others_fail)
    assert await forward("c", REQUEST) == failed(
        "http_503", 1, "circuit_open", BreakerState.OPEN, 30.0, FIRST_DECISION
    )
    assert len(upstream.calls) == 1


async def test_an_open_breaker_refuses_the_first_attempt(make_forward: MakeForward) -> None:
    forward, _, _ = make_forward(
        UpstreamUnavailable("down"), limit=100, threshold=1, recovery=30.0,
        retry=RetryPolicy(max_retries=0),
    )  # fmt: skip
    await forward("c", REQUEST)
    second = RateLimitDecision(True, 100, 98, 60.0, 0.0)
    assert await forward("c", REQUEST) == CircuitOpen(
        state=BreakerState.OPEN, retry_after_seconds=30.0, rate_limit=second
    )


async def test_a_full_bulkhead_refuses_the_first_attempt(make_forward: MakeForward) -> None:
    bulkhead = Bulkhead(1)
    forward, upstream, _ = make_forward(limit=100, bulkhead=bulkhead)
    bulkhead.try_acquire()  # another request holds the only slot
    assert await forward("c", REQUEST) == Saturated(in_flight_limit=1, rate_limit=FIRST_DECISION)
    assert upstream.calls == []


async def test_a_bulkhead_filled_by_others_during_the_wait_stops_the_retry(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    bulkhead = Bulkhead(1)
    planned, upstream, _ = make_forward(default=503, limit=100, bulkhead=bulkhead)
    forward = acting(planned, clock, bulkhead.try_acquire)
    assert await forward("c", REQUEST) == failed(
        "http_503", 1, "bulkhead", BreakerState.CLOSED, None, FIRST_DECISION
    )
    assert len(upstream.calls) == 1


async def test_a_wait_that_ends_too_late_stops_at_the_deadline(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    retry = RetryPolicy(max_retries=3, initial_backoff_seconds=1.0)
    planned, upstream, _ = make_forward(
        default=503, limit=100, retry=retry, request_timeout=3.0, min_attempt_seconds=1.0
    )
    forward = acting(planned, clock, lambda: clock.advance(1.5))  # the wait ran late
    assert await forward("c", REQUEST) == failed(
        "http_503", 1, "deadline", BreakerState.CLOSED, None, FIRST_DECISION
    )
    assert len(upstream.calls) == 1


async def test_a_wait_that_would_not_leave_min_attempt_seconds_is_not_started(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    retry = RetryPolicy(max_retries=3, initial_backoff_seconds=2.5)
    forward, _, _ = make_forward(
        default=503, limit=100, retry=retry, request_timeout=3.0, min_attempt_seconds=1.0
    )
    assert await forward("c", REQUEST) == failed(
        "http_503", 1, "deadline", BreakerState.CLOSED, None, FIRST_DECISION
    )
    assert clock.sleeps == []


async def test_a_wait_that_leaves_exactly_min_attempt_seconds_is_taken(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    retry = RetryPolicy(max_retries=1, initial_backoff_seconds=2.0)
    forward, upstream, _ = make_forward(
        503, default=200, retry=retry, request_timeout=3.0, min_attempt_seconds=1.0
    )
    assert isinstance(await forward("c", REQUEST), Forwarded)
    assert clock.sleeps == [2.0]
    assert len(upstream.calls) == 2


async def test_an_upstream_retry_after_past_the_deadline_is_passed_on(
    make_forward: MakeForward,
) -> None:
    forward, _, _ = make_forward(
        UpstreamResponse(503, retry_after_seconds=60.0), default=200, limit=100
    )
    assert await forward("c", REQUEST) == failed(
        "http_503", 1, "upstream_retry_after", BreakerState.CLOSED, 60.0, FIRST_DECISION
    )


async def test_a_spent_budget_after_an_answer_forwards_that_answer(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    busy = UpstreamResponse(503, (), b"busy")
    budget = RetryBudget(RetryBudgetPolicy(percent=0, min_retries_per_second=0), clock)
    forward, _, counters = make_forward(busy, limit=100, retry_budget=budget)
    assert await forward("c", REQUEST) == Forwarded(
        response=busy, attempts=1, rate_limit=FIRST_DECISION
    )
    assert counters.retries_refused == 1


async def test_a_spent_budget_after_a_transport_error_is_upstream_failed(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    budget = RetryBudget(RetryBudgetPolicy(percent=0, min_retries_per_second=0), clock)
    forward, _, _ = make_forward(UpstreamUnavailable("down"), limit=100, retry_budget=budget)
    assert await forward("c", REQUEST) == failed(
        "connection_error", 1, "retry_budget", BreakerState.CLOSED, None, FIRST_DECISION
    )


@pytest.mark.parametrize(("status", "outcome"), [(499, "success"), (500, "http_5xx")])
async def test_an_answer_counts_as_5xx_from_500_on(
    make_forward: MakeForward, status: int, outcome: str
) -> None:
    forward, _, counters = make_forward(status)
    await forward("c", REQUEST)
    assert counters.upstream_attempts[outcome] == 1
