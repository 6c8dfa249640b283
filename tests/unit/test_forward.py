"""The use case: limiter -> breaker -> retries -> upstream, with fakes and fake time."""

from __future__ import annotations

import asyncio

import pytest

from adapters.clock.fake import FakeClock, let_other_tasks_run
from application.forward import CircuitOpen, Forwarded, RateLimited, UpstreamFailed
from domain.breaker import BreakerState
from domain.errors import UpstreamTimeout, UpstreamUnavailable
from domain.ports import UpstreamRequest, UpstreamResponse
from domain.retry import RetryPolicy
from tests.unit.conftest import MakeForward

REQUEST = UpstreamRequest("GET", "/flaky-data")


async def test_success_passes_the_upstream_answer_through(make_forward: MakeForward) -> None:
    answer = UpstreamResponse(200, (("content-type", "text/plain"),), b"hello")
    forward, upstream, _ = make_forward(answer)
    result = await forward("client", REQUEST)
    assert result == Forwarded(answer, 1, None)
    assert upstream.calls[0][0] is REQUEST


async def test_transient_failure_is_retried_with_the_backoff_schedule(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, _upstream, counters = make_forward(503, UpstreamTimeout("t"), UpstreamUnavailable("c"))
    result = await forward("client", REQUEST)
    assert isinstance(result, Forwarded)
    assert result.attempts == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert counters.retries == 3
    assert counters.upstream_attempts == {
        "success": 1,
        "http_5xx": 1,
        "timeout": 1,
        "connection_error": 1,
        "bad_answer": 0,
    }


async def test_every_attempt_failing_gives_upstream_failed(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, upstream, _ = make_forward(default=503)
    result = await forward("client", REQUEST)
    assert isinstance(result, UpstreamFailed)
    assert (result.attempts, result.reason, result.stopped_by) == (
        4,
        "http_503",
        "retries_exhausted",
    )
    assert len(upstream.calls) == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("status", [500, 502, 404, 429, 400])
async def test_non_retryable_answers_are_returned_unchanged_without_retry(
    make_forward: MakeForward, clock: FakeClock, status: int
) -> None:
    answer = UpstreamResponse(status, (), b'{"error":"x"}')
    forward, _upstream, _ = make_forward(answer)
    result = await forward("client", REQUEST)
    assert result == Forwarded(answer, 1, None)
    assert clock.sleeps == []


async def test_client_errors_count_as_success_for_the_breaker(make_forward: MakeForward) -> None:
    forward, _, _ = make_forward(default=404, threshold=2)
    for _ in range(5):
        await forward("client", REQUEST)
    assert forward.route.breaker.state is BreakerState.CLOSED


async def test_non_retryable_5xx_counts_as_failure_for_the_breaker(
    make_forward: MakeForward,
) -> None:
    forward, _, _ = make_forward(default=500, threshold=2)
    await forward("client", REQUEST)
    await forward("client", REQUEST)
    assert forward.route.breaker.state is BreakerState.OPEN


async def test_each_retry_is_one_call_for_the_breaker(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, upstream, _ = make_forward(default=503, threshold=3)
    result = await forward("client", REQUEST)
    assert isinstance(result, UpstreamFailed)
    assert len(upstream.calls) == 3
    assert result.stopped_by == "circuit_open"
    assert result.breaker_state is BreakerState.OPEN
    assert result.retry_after_seconds == pytest.approx(30.0)


async def test_retrying_stops_without_sleeping_once_the_breaker_opens(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, _, _ = make_forward(default=503, threshold=2)
    await forward("client", REQUEST)
    assert clock.sleeps == [0.5]


async def test_open_breaker_fails_fast_without_touching_the_upstream(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, upstream, counters = make_forward(default=503, threshold=1, recovery=30.0)
    await forward("client", REQUEST)
    calls = len(upstream.calls)
    clock.advance(10.0)
    result = await forward("client", REQUEST)
    assert isinstance(result, CircuitOpen)
    assert result.retry_after_seconds == pytest.approx(20.0)
    assert len(upstream.calls) == calls
    assert counters.circuit_rejections == 1  # this request, refused before any attempt
    assert counters.retries_stopped_by_breaker == 1  # the first request's retry


async def test_breaker_recovers_through_half_open_after_the_timeout(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, _upstream, _ = make_forward(503, default=200, threshold=1, recovery=30.0)
    await forward("client", REQUEST)
    assert forward.route.breaker.state is BreakerState.OPEN
    clock.advance(30.0)
    result = await forward("client", REQUEST)
    assert isinstance(result, Forwarded)
    assert forward.route.breaker.state is BreakerState.CLOSED


async def test_rate_limit_is_checked_before_anything_else(make_forward: MakeForward) -> None:
    forward, upstream, counters = make_forward(limit=2)
    results = [await forward("client", REQUEST) for _ in range(3)]
    assert isinstance(results[2], RateLimited)
    assert results[2].rate_limit.retry_after_seconds == pytest.approx(60.0)
    assert len(upstream.calls) == 2
    assert (counters.rate_limit_allowed, counters.rate_limit_blocked) == (2, 1)


async def test_rate_limited_requests_do_not_reach_an_open_breaker(
    make_forward: MakeForward,
) -> None:
    forward, _, counters = make_forward(default=503, threshold=1, limit=1)
    await forward("client", REQUEST)
    result = await forward("client", REQUEST)
    assert isinstance(result, RateLimited)
    assert counters.circuit_rejections == 0
    assert counters.retries_stopped_by_breaker == 1


async def test_attempt_timeout_is_capped_by_the_time_left(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    retry = RetryPolicy(max_retries=5, initial_backoff_seconds=0.5, backoff_multiplier=1.0)
    forward, upstream, _ = make_forward(
        default=200,
        retry=retry,
        threshold=100,
        attempt_timeout=4.0,
        request_timeout=10.0,
        elapse=100.0,
    )
    started = clock.now()
    result = await forward("client", REQUEST)
    # 0-4 attempt, 4.5-8.5 attempt, 9.0-10.0 attempt with only 1 s left, then no sleep fits
    assert [timeout for _, timeout in upstream.calls] == [4.0, 4.0, pytest.approx(1.0)]
    assert isinstance(result, UpstreamFailed)
    assert (result.reason, result.stopped_by) == ("timeout", "deadline")
    assert clock.now() - started == pytest.approx(10.0)


async def test_no_backoff_sleep_starts_that_would_end_after_the_deadline(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    retry = RetryPolicy(
        max_retries=10,
        initial_backoff_seconds=1.0,
        backoff_multiplier=2.0,
        max_backoff_seconds=100.0,
    )
    forward, upstream, _ = make_forward(
        default=503, retry=retry, threshold=100, request_timeout=10.0
    )
    result = await forward("client", REQUEST)
    assert clock.sleeps == [1.0, 2.0, 4.0]  # 8.0 more would end at 15 s > 10 s
    assert isinstance(result, UpstreamFailed)
    assert result.stopped_by == "deadline"
    assert len(upstream.calls) == 4


async def test_twenty_concurrent_calls_in_half_open_admit_exactly_the_trial_limit(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, upstream, _ = make_forward(
        UpstreamUnavailable("down"),
        default=200,
        threshold=1,
        recovery=5.0,
        trials=3,
        retry=RetryPolicy(max_retries=0),
    )
    await forward("client", REQUEST)
    clock.advance(5.0)
    upstream.gate = asyncio.Event()
    tasks = [asyncio.create_task(forward(f"c{n}", REQUEST)) for n in range(20)]
    try:
        await let_other_tasks_run()
        in_flight_while_held = upstream.in_flight
    finally:
        upstream.gate.set()
    results = await asyncio.gather(*tasks)
    assert in_flight_while_held == 3
    assert sum(isinstance(r, Forwarded) for r in results) == 3
    assert sum(isinstance(r, CircuitOpen) for r in results) == 17
    assert forward.route.breaker.state is BreakerState.CLOSED


async def test_cancelled_trial_releases_its_permit(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, upstream, _ = make_forward(
        UpstreamUnavailable("down"),
        default=200,
        threshold=1,
        recovery=5.0,
        retry=RetryPolicy(max_retries=0),
    )
    await forward("client", REQUEST)
    clock.advance(5.0)
    upstream.gate = asyncio.Event()
    trial = asyncio.create_task(forward("client", REQUEST))
    await let_other_tasks_run()
    assert upstream.in_flight == 1
    assert isinstance(await forward("other", REQUEST), CircuitOpen)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert forward.route.breaker.state is BreakerState.HALF_OPEN
    upstream.gate = None
    assert isinstance(await forward("other", REQUEST), Forwarded)
    assert forward.route.breaker.state is BreakerState.CLOSED


async def test_timed_out_trial_reopens_the_breaker(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, _, _ = make_forward(
        UpstreamUnavailable("down"),
        UpstreamTimeout("slow"),
        default=200,
        threshold=1,
        recovery=5.0,
        retry=RetryPolicy(max_retries=0),
    )
    await forward("client", REQUEST)
    clock.advance(5.0)
    result = await forward("client", REQUEST)
    assert isinstance(result, UpstreamFailed)
    assert result.reason == "timeout"
    assert forward.route.breaker.state is BreakerState.OPEN


async def test_concurrent_requests_of_one_client_never_exceed_its_limit(
    make_forward: MakeForward,
) -> None:
    forward, upstream, counters = make_forward(limit=7)
    upstream.gate = asyncio.Event()
    tasks = [asyncio.create_task(forward("same", REQUEST)) for _ in range(50)]
    await let_other_tasks_run()
    upstream.gate.set()
    results = await asyncio.gather(*tasks)
    assert sum(isinstance(r, Forwarded) for r in results) == 7
    assert len(upstream.calls) == 7
    assert counters.rate_limit_blocked == 43
