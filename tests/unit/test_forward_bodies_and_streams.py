"""The use case's rules for request bodies, bad answers and streamed answers, with fake time.

- The body is read only after the limiter, the breaker and the bulkhead admitted the request;
  whatever reading it raises reaches the caller with every permit released.
- An answer that breaks HTTP or the bounds (``UpstreamBadAnswer``) is a breaker failure and is
  never retried.
- A streamed answer settles its attempt when the stream ends: read through, as its status says;
  broken off, a failure; closed early, abandoned. Until then its bulkhead slot stays taken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.clock.fake import FakeClock
from application.forward import (
    BadUpstreamAnswer,
    CircuitOpen,
    Forwarded,
    RateLimited,
    Saturated,
    UpstreamFailed,
)
from domain.breaker import BreakerPolicy, BreakerState
from domain.bulkhead import Bulkhead
from domain.errors import UpstreamBadAnswer, UpstreamUnavailable
from domain.ports import Body, UpstreamRequest, UpstreamResponse
from domain.retry import RetryPolicy
from tests.unit.conftest import MakeForward

REQUEST = UpstreamRequest("PUT", "/flaky-data")


class BodySource:
    """Counts how often the body was read; raises ``error`` instead when given one."""

    def __init__(self, body: Body = b"payload", error: Exception | None = None) -> None:
        self.body = body
        self.error = error
        self.reads = 0

    async def __call__(self) -> Body:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.body


class TooLarge(Exception):
    pass


class ScriptedStream:
    """The rest of an answer: ``chunks``, then ``error`` if given; records ``aclose``."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


def streamed(status: int, stream: ScriptedStream) -> UpstreamResponse:
    return UpstreamResponse(status, (), b"first", rest=stream)


async def test_the_body_is_read_once_admitted_and_sent_upstream(make_forward: MakeForward) -> None:
    forward, upstream, _ = make_forward()
    source = BodySource(bytearray(b"payload"))
    result = await forward("client", REQUEST, source)
    assert isinstance(result, Forwarded)
    assert source.reads == 1
    assert upstream.calls[0][0].body == b"payload"


async def test_a_rate_limited_client_never_gets_to_upload(make_forward: MakeForward) -> None:
    forward, _, _ = make_forward(limit=1)
    await forward("client", REQUEST, BodySource())
    source = BodySource()
    result = await forward("client", REQUEST, source)
    assert isinstance(result, RateLimited)
    assert source.reads == 0


async def test_an_open_breaker_refuses_before_the_body_is_read(make_forward: MakeForward) -> None:
    forward, _, _ = make_forward(default=503, threshold=1)
    await forward("client", REQUEST, BodySource())
    source = BodySource()
    result = await forward("client", REQUEST, source)
    assert isinstance(result, CircuitOpen)
    assert source.reads == 0


async def test_a_full_bulkhead_refuses_before_the_body_is_read(make_forward: MakeForward) -> None:
    bulkhead = Bulkhead(1)
    forward, _, _ = make_forward(bulkhead=bulkhead)
    assert bulkhead.try_acquire()
    source = BodySource()
    result = await forward("client", REQUEST, source)
    assert isinstance(result, Saturated)
    assert source.reads == 0


async def test_a_body_that_cannot_be_read_releases_the_bulkhead_and_the_trial(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    bulkhead = Bulkhead(1)
    forward, upstream, _ = make_forward(503, threshold=1, recovery=30.0, bulkhead=bulkhead)
    await forward("client", REQUEST, BodySource())
    clock.advance(30.0)
    calls = len(upstream.calls)
    with pytest.raises(TooLarge):
        await forward("client", REQUEST, BodySource(error=TooLarge()))
    assert bulkhead.in_flight == 0
    assert len(upstream.calls) == calls
    assert forward.route.breaker.state is BreakerState.HALF_OPEN
    # the trial slot was freed: the next request is admitted as the trial
    result = await forward("client", REQUEST, BodySource())
    assert isinstance(result, Forwarded)


async def test_the_deadline_starts_when_the_body_is_in(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    forward, upstream, _ = make_forward(request_timeout=10.0, attempt_timeout=2.0)

    async def slow_body() -> Body:
        clock.advance(9.5)
        return b"late"

    await forward("client", REQUEST, slow_body)
    assert upstream.calls[0][1] == pytest.approx(2.0)


async def test_a_bad_answer_is_a_breaker_failure_and_never_retried(
    make_forward: MakeForward,
) -> None:
    forward, upstream, counters = make_forward(
        default=UpstreamBadAnswer("status 999"), threshold=2, retry=RetryPolicy(max_retries=3)
    )
    first = await forward("client", REQUEST)
    assert isinstance(first, BadUpstreamAnswer)
    assert (first.attempts, first.detail) == (1, "status 999")
    assert len(upstream.calls) == 1
    assert counters.retries == 0
    assert counters.upstream_attempts["bad_answer"] == 1
    await forward("client", REQUEST)
    assert forward.route.breaker.state is BreakerState.OPEN


async def test_a_streamed_answer_holds_its_bulkhead_slot_until_read_through(
    make_forward: MakeForward,
) -> None:
    bulkhead = Bulkhead(5)
    stream = ScriptedStream([b"a", b"b"])
    forward, _, _ = make_forward(streamed(200, stream), bulkhead=bulkhead)
    result = await forward("client", REQUEST)
    assert isinstance(result, Forwarded)
    assert bulkhead.in_flight == 1
    rest = result.response.rest
    assert rest is not None
    assert [chunk async for chunk in rest] == [b"a", b"b"]
    assert bulkhead.in_flight == 0


async def test_a_stream_that_breaks_off_is_a_breaker_failure(make_forward: MakeForward) -> None:
    forward, _, counters = make_forward(
        streamed(200, ScriptedStream([b"a"], UpstreamUnavailable("cut"))), threshold=1
    )
    result = await forward("client", REQUEST)
    assert isinstance(result, Forwarded)
    assert forward.route.breaker.state is BreakerState.CLOSED
    rest = result.response.rest
    assert rest is not None
    with pytest.raises(UpstreamUnavailable):
        async for _ in rest:
            pass
    assert forward.route.breaker.state is BreakerState.OPEN
    assert counters.answers_cut == {"connection_error": 1}


async def test_a_stream_the_client_leaves_is_abandoned_not_failed(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    bulkhead = Bulkhead(5)
    stream = ScriptedStream([b"a", b"b"])
    forward, upstream, _ = make_forward(503, threshold=1, recovery=30.0, bulkhead=bulkhead)
    await forward("client", REQUEST)
    clock.advance(30.0)
    upstream.push(streamed(200, stream))
    result = await forward("client", REQUEST)  # the HALF_OPEN trial, streamed
    assert isinstance(result, Forwarded)
    rest = result.response.rest
    assert rest is not None
    await rest.aclose()
    assert stream.closed
    assert bulkhead.in_flight == 0
    assert forward.route.breaker.state is BreakerState.HALF_OPEN  # neither closed nor reopened
    assert forward.route.breaker.allow_request().allowed  # the trial slot is free again


async def test_a_retried_streamed_answer_is_closed_before_the_retry(
    make_forward: MakeForward,
) -> None:
    stream = ScriptedStream([b"never read"])
    forward, upstream, _ = make_forward(streamed(503, stream), 200)
    result = await forward("client", REQUEST)
    assert isinstance(result, Forwarded)
    assert result.response.status == 200
    assert stream.closed
    assert len(upstream.calls) == 2


async def test_a_streamed_answer_that_ends_the_retries_is_closed(
    make_forward: MakeForward,
) -> None:
    stream = ScriptedStream([b"never read"])
    forward, _, _ = make_forward(streamed(503, stream), retry=RetryPolicy(max_retries=0))
    result = await forward("client", REQUEST)
    assert isinstance(result, UpstreamFailed)
    assert stream.closed


async def test_a_retryable_status_below_500_that_runs_out_of_retries_is_named(
    make_forward: MakeForward,
) -> None:
    forward, _, _ = make_forward(
        default=429, retry=RetryPolicy(max_retries=1, retry_on_status=frozenset({429}))
    )
    result = await forward("client", REQUEST)
    assert isinstance(result, UpstreamFailed)
    assert (result.reason, result.attempts, result.stopped_by) == (
        "http_429",
        2,
        "retries_exhausted",
    )
    assert forward.route.breaker.state is BreakerState.CLOSED  # a 4xx is still a success


# --- streamed answers: what the breaker, the bulkhead and the client hear --------------------


async def test_a_streamed_answer_s_duration_is_its_time_to_the_head(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    policy = BreakerPolicy(sliding_window_size=1, minimum_calls=1, slow_call_duration_seconds=1.0)
    quick, _, _ = make_forward(streamed(200, ScriptedStream([b"a"])), breaker_policy=policy)
    result = await quick("client", REQUEST)
    assert isinstance(result, Forwarded)
    assert result.response.rest is not None
    clock.advance(60.0)  # a slow client reading the rest says nothing about the upstream
    assert [chunk async for chunk in result.response.rest] == [b"a"]
    assert quick.route.breaker.state is BreakerState.CLOSED

    slow, _, _ = make_forward(
        streamed(200, ScriptedStream([b"a"])), breaker_policy=policy, elapse=1.5
    )
    result = await slow("client", REQUEST)
    assert isinstance(result, Forwarded)
    assert result.response.rest is not None
    assert [chunk async for chunk in result.response.rest] == [b"a"]
    assert slow.route.breaker.state is BreakerState.OPEN  # a slow head is a slow call


async def test_a_streamed_5xx_passed_on_is_a_breaker_failure_when_read_through(
    make_forward: MakeForward,
) -> None:
    forward, _, _ = make_forward(
        streamed(500, ScriptedStream([b"a"])), threshold=1, retry=RetryPolicy(max_retries=2)
    )
    result = await forward("client", REQUEST)  # 500 is not a retried status: passed on
    assert isinstance(result, Forwarded)
    assert result.response.rest is not None
    assert forward.route.breaker.state is BreakerState.CLOSED
    assert [chunk async for chunk in result.response.rest] == [b"a"]
    assert forward.route.breaker.state is BreakerState.OPEN


async def test_a_stream_read_through_and_then_closed_settles_once(
    make_forward: MakeForward,
) -> None:
    bulkhead = Bulkhead(5)
    forward, _, _ = make_forward(streamed(200, ScriptedStream([b"a"])), bulkhead=bulkhead)
    result = await forward("client", REQUEST)
    assert isinstance(result, Forwarded)
    rest = result.response.rest
    assert rest is not None
    assert [chunk async for chunk in rest] == [b"a"]
    await rest.aclose()  # what a server does after the last chunk
    assert bulkhead.in_flight == 0


async def test_streamed_and_bad_answers_carry_the_rate_limit_decision(
    make_forward: MakeForward,
) -> None:
    forward, upstream, _ = make_forward(streamed(200, ScriptedStream([b"a"])), limit=5)
    result = await forward("client", REQUEST)
    assert isinstance(result, Forwarded)
    assert result.rate_limit is not None
    assert (result.rate_limit.allowed, result.rate_limit.remaining) == (True, 4)
    upstream.push(UpstreamBadAnswer("status 999"))
    bad = await forward("client", REQUEST)
    assert isinstance(bad, BadUpstreamAnswer)
    assert bad.rate_limit is not None
    assert (bad.rate_limit.allowed, bad.rate_limit.remaining) == (True, 3)


async def test_a_streamed_answer_that_is_retried_frees_its_bulkhead_slot(
    make_forward: MakeForward,
) -> None:
    bulkhead = Bulkhead(1)
    stream = ScriptedStream([b"never read"])
    forward, upstream, _ = make_forward(streamed(503, stream), 200, bulkhead=bulkhead)
    result = await forward("client", REQUEST)
    assert isinstance(result, Forwarded)
    assert result.response.status == 200
    assert stream.closed
    assert bulkhead.in_flight == 0
    assert len(upstream.calls) == 2


async def test_a_streamed_answer_that_runs_out_of_retries_frees_its_bulkhead_slot(
    make_forward: MakeForward,
) -> None:
    bulkhead = Bulkhead(1)
    stream = ScriptedStream([b"never read"])
    forward, _, _ = make_forward(
        streamed(503, stream), retry=RetryPolicy(max_retries=0), bulkhead=bulkhead
    )
    result = await forward("client", REQUEST)
    assert isinstance(result, UpstreamFailed)
    assert result.stopped_by == "retries_exhausted"
    assert stream.closed
    assert bulkhead.in_flight == 0


async def test_a_streamed_answer_that_opens_the_breaker_is_closed_and_frees_its_slot(
    make_forward: MakeForward,
) -> None:
    bulkhead = Bulkhead(1)
    stream = ScriptedStream([b"never read"])
    forward, _, _ = make_forward(streamed(503, stream), threshold=1, bulkhead=bulkhead)
    result = await forward("client", REQUEST)
    assert isinstance(result, UpstreamFailed)
    assert result.stopped_by == "circuit_open"
    assert stream.closed
    assert bulkhead.in_flight == 0


async def test_a_streamed_answer_whose_retry_misses_the_deadline_is_closed_and_frees_its_slot(
    make_forward: MakeForward,
) -> None:
    bulkhead = Bulkhead(1)
    stream = ScriptedStream([b"never read"])
    forward, _, _ = make_forward(
        streamed(503, stream),
        retry=RetryPolicy(max_retries=3, initial_backoff_seconds=5.0),
        request_timeout=2.0,
        bulkhead=bulkhead,
    )
    result = await forward("client", REQUEST)
    assert isinstance(result, UpstreamFailed)
    assert result.stopped_by == "deadline"
    assert stream.closed
    assert bulkhead.in_flight == 0


async def test_a_streamed_answer_to_a_post_that_is_not_retried_is_closed_and_frees_its_slot(
    make_forward: MakeForward,
) -> None:
    stream = ScriptedStream([b"never read"])
    bulkhead = Bulkhead(1)
    forward, upstream, _ = make_forward(streamed(503, stream), 200, bulkhead=bulkhead)
    result = await forward("client", UpstreamRequest("POST", "/flaky-data", body=b"x"))
    assert isinstance(result, UpstreamFailed)
    assert result.stopped_by == "not_idempotent"
    assert stream.closed
    assert bulkhead.in_flight == 0
    assert len(upstream.calls) == 1
