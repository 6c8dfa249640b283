"""The use case's reliability rules: budget, bulkhead, upstream Retry-After, deadline, jitter."""

from __future__ import annotations

import asyncio
import random

import pytest

from adapters.clock.fake import FakeClock, let_other_tasks_run
from application.forward import Forwarded, Saturated, UpstreamFailed
from domain.bulkhead import Bulkhead
from domain.errors import UpstreamUnavailable
from domain.ports import UpstreamRequest, UpstreamResponse
from domain.retry import Jitter, RetryPolicy
from domain.retry_budget import RetryBudget, RetryBudgetPolicy
from tests.unit.conftest import MakeForward

REQUEST = UpstreamRequest("GET", "/flaky-data")


async def test_spent_budget_ends_with_the_last_upstream_answer(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    failing = UpstreamResponse(503, (("x-from", "backend"),), b"busy")
    budget = RetryBudget(RetryBudgetPolicy(percent=50, min_retries_per_second=0), clock)
    forward, upstream, counters = make_forward(default=failing, threshold=1000, retry_budget=budget)
    results = [await forward(f"c{n}", REQUEST) for n in range(4)]
    # 50 %: after n first attempts, n/2 retries fit. Request 1 is refused its retry (1 > 0.5),
    # request 2 retries once (1 <= 1) then is refused, 3 is refused (2 > 1.5), 4 retries once.
    assert len(upstream.calls) == 4 + 2
    assert counters.retries == 2
    assert counters.retries_refused == 4
    assert all(isinstance(r, Forwarded | UpstreamFailed) for r in results)
    refused = [r for r in results if isinstance(r, Forwarded)]
    assert refused
    assert all(r.response is failing for r in refused)


async def test_without_budget_every_request_uses_all_retries(make_forward: MakeForward) -> None:
    forward, upstream, _ = make_forward(default=503, threshold=1000)
    for n in range(4):
        await forward(f"c{n}", REQUEST)
    assert len(upstream.calls) == 4 * 4


async def test_budget_refusal_after_a_transport_error_is_upstream_failed(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    budget = RetryBudget(RetryBudgetPolicy(percent=0, min_retries_per_second=0), clock)
    forward, _, _ = make_forward(
        default=UpstreamUnavailable("down"), threshold=1000, retry_budget=budget
    )
    result = await forward("c", REQUEST)
    assert isinstance(result, UpstreamFailed)
    assert (result.attempts, result.stopped_by) == (1, "retry_budget")


async def test_bulkhead_caps_calls_in_flight_and_refuses_at_once(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, upstream, counters = make_forward(default=200, bulkhead=Bulkhead(3))
    upstream.gate = asyncio.Event()
    tasks = [asyncio.create_task(forward(f"c{n}", REQUEST)) for n in range(10)]
    try:
        await let_other_tasks_run()
        in_flight = upstream.in_flight
    finally:
        upstream.gate.set()
    results = await asyncio.gather(*tasks)
    assert in_flight == 3
    assert sum(isinstance(r, Saturated) for r in results) == 7
    assert counters.bulkhead_rejections == 7
    assert counters.circuit_rejections == 0
    assert forward.route.bulkhead is not None
    assert forward.route.bulkhead.in_flight == 0


async def test_bulkhead_refusal_does_not_wedge_a_half_open_breaker(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    bulkhead = Bulkhead(1)
    forward, _, _ = make_forward(
        UpstreamUnavailable("down"), default=200, threshold=1, recovery=5,
        retry=RetryPolicy(max_retries=0), bulkhead=bulkhead,
    )  # fmt: skip
    await forward("c", REQUEST)
    clock.advance(5)
    bulkhead.try_acquire()  # someone else holds the only slot
    assert isinstance(await forward("c", REQUEST), Saturated)
    bulkhead.release()
    assert isinstance(await forward("c", REQUEST), Forwarded)


async def test_upstream_retry_after_lengthens_the_wait(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    slow_down = UpstreamResponse(503, (), b"", retry_after_seconds=3.0)
    forward, _, _ = make_forward(slow_down, default=200)
    result = await forward("c", REQUEST)
    assert isinstance(result, Forwarded)
    assert clock.sleeps == [3.0]


async def test_short_upstream_retry_after_does_not_shorten_the_backoff(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, _, _ = make_forward(UpstreamResponse(503, retry_after_seconds=0.1), default=200)
    await forward("c", REQUEST)
    assert clock.sleeps == [0.5]


async def test_retry_after_beyond_the_deadline_stops_and_is_passed_on(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, upstream, _ = make_forward(
        UpstreamResponse(503, retry_after_seconds=60.0), default=200, request_timeout=10.0
    )
    result = await forward("c", REQUEST)
    assert isinstance(result, UpstreamFailed)
    assert (result.stopped_by, result.retry_after_seconds) == ("upstream_retry_after", 60.0)
    assert len(upstream.calls) == 1
    assert clock.sleeps == []


async def test_no_attempt_starts_with_less_than_its_useful_time(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    retry = RetryPolicy(max_retries=5, initial_backoff_seconds=1.0, backoff_multiplier=1.0)
    forward, upstream, _ = make_forward(
        default=503, retry=retry, threshold=100, request_timeout=3.0, min_attempt_seconds=1.5
    )
    result = await forward("c", REQUEST)
    # t=0 attempt, sleep 1 -> t=1 (2 s left >= 1.5), attempt, sleep 1 would leave 1 s < 1.5
    assert len(upstream.calls) == 2
    assert clock.sleeps == [1.0]
    assert isinstance(result, UpstreamFailed)
    assert result.stopped_by == "deadline"


async def test_jittered_waits_come_from_the_injected_source(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, _, _ = make_forward(
        503, 503, default=200, retry=RetryPolicy(jitter=Jitter.FULL), rng=random.Random(42)
    )
    await forward("c", REQUEST)
    expected = random.Random(42)
    assert clock.sleeps == [expected.uniform(0, 0.5), expected.uniform(0, 1.0)]


def test_a_jittered_policy_without_a_random_source_is_refused(make_forward: MakeForward) -> None:
    with pytest.raises(ValueError, match="random source"):
        make_forward(retry=RetryPolicy(jitter=Jitter.EQUAL))
