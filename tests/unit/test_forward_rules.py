"""Rules of the use case that planted bugs once slipped past (issue 16), written as the rules.

Each test drives ``ForwardRequest`` through its public call with fakes and checks what a client
or the upstream would see: what was sent, what was answered, what was counted.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.backend_client.fake import FakeUpstream
from adapters.clock.fake import FakeClock
from adapters.metrics.counters import RouteCounters
from application.forward import (
    Forwarded,
    ForwardRequest,
    RateLimitUnavailable,
    UpstreamFailed,
)
from domain.bulkhead import Bulkhead
from domain.errors import (
    RateLimitStoreUnavailable,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from domain.ports import UpstreamRequest
from domain.rate_limit import RateLimitDecision, RateLimitPolicy
from domain.retry import Jitter, RetryPolicy
from tests.unit.conftest import MakeForward

REQUEST = UpstreamRequest("GET", "/flaky-data")


class LateSleeper:
    """A sleeper on a loaded machine: every sleep ends ``lateness`` seconds after it should."""

    def __init__(self, clock: FakeClock, lateness: float) -> None:
        self.clock = clock
        self.lateness = lateness
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds + self.lateness)


class UpperEnd:
    """A random source that always draws the top of the range, recording every range."""

    def __init__(self) -> None:
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return b


class UnavailableStore:
    """A rate-limit storage that is down: every decision raises ``RateLimitStoreUnavailable``."""

    policy = RateLimitPolicy(1, 60.0)
    tracked_clients = None

    def __init__(self) -> None:
        self.asked = 0

    async def allow_request(self, client_id: str) -> RateLimitDecision:
        self.asked += 1
        raise RateLimitStoreUnavailable("storage down")

    async def aclose(self) -> None:
        pass


def with_store(
    make_forward: MakeForward, clock: FakeClock, store: UnavailableStore, *, fail_open: bool
) -> tuple[ForwardRequest, FakeUpstream, RouteCounters]:
    built, upstream, counters = make_forward()
    route = replace(built.route, limiter=store, rate_limit_fail_open=fail_open)
    return ForwardRequest(route, clock, clock, counters), upstream, counters


# --- the bulkhead ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [UpstreamTimeout("slow"), UpstreamUnavailable("refused")], ids=["timeout", "refused"]
)
async def test_a_failed_attempt_gives_its_bulkhead_slot_back(
    make_forward: MakeForward, error: UpstreamError
) -> None:
    bulkhead = Bulkhead(2)
    forward, upstream, _ = make_forward(
        error, error, error, default=200, threshold=100, retry=RetryPolicy(max_retries=0),
        bulkhead=bulkhead,
    )  # fmt: skip
    failures = [await forward("c", REQUEST) for _ in range(3)]  # more than the bulkhead holds
    assert all(isinstance(r, UpstreamFailed) for r in failures)
    assert bulkhead.in_flight == 0
    assert isinstance(await forward("c", REQUEST), Forwarded)
    assert len(upstream.calls) == 4


# --- the deadline ---------------------------------------------------------------------------


async def test_no_attempt_starts_with_less_than_min_attempt_seconds_even_after_a_late_sleep(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    retry = RetryPolicy(max_retries=3, initial_backoff_seconds=1.0, backoff_multiplier=1.0)
    planned, upstream, counters = make_forward(
        default=503, retry=retry, threshold=100, request_timeout=3.0, min_attempt_seconds=1.0
    )
    late = LateSleeper(clock, lateness=1.5)
    forward = ForwardRequest(planned.route, clock, late, counters)
    result = await forward("c", REQUEST)
    # t=0 attempt; a 1 s wait leaves 2 s >= 1 s, but it ends at t=2.5: 0.5 s left < 1 s
    assert late.sleeps == [1.0]
    assert len(upstream.calls) == 1
    assert isinstance(result, UpstreamFailed)
    assert (result.attempts, result.stopped_by) == (1, "deadline")


async def test_an_attempt_may_start_with_exactly_min_attempt_seconds_left(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    retry = RetryPolicy(max_retries=1, initial_backoff_seconds=1.0)
    planned, upstream, counters = make_forward(
        default=503, retry=retry, threshold=100, request_timeout=3.0, min_attempt_seconds=1.0
    )
    forward = ForwardRequest(planned.route, clock, LateSleeper(clock, lateness=1.0), counters)
    await forward("c", REQUEST)
    # the wait ends at t=2: exactly 1 s left, which is enough; that attempt gets the 1 s
    assert [timeout for _, timeout in upstream.calls] == [2.0, 1.0]


# --- jitter -----------------------------------------------------------------------------------


async def test_decorrelated_waits_grow_from_the_previous_wait(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    rng = UpperEnd()
    retry = RetryPolicy(
        max_retries=3, initial_backoff_seconds=0.5, max_backoff_seconds=100.0,
        jitter=Jitter.DECORRELATED,
    )  # fmt: skip
    forward, _, _ = make_forward(
        503, 503, 503, default=200, retry=retry, request_timeout=60.0, rng=rng
    )
    assert isinstance(await forward("c", REQUEST), Forwarded)
    # each wait is drawn from [initial, 3 x the previous wait]
    assert rng.ranges == [(0.5, 0.5), (0.5, 1.5), (0.5, 4.5)]
    assert clock.sleeps == [0.5, 1.5, 4.5]


# --- a failing rate-limit store -----------------------------------------------------------------


async def test_a_failing_limiter_store_fails_open_when_the_route_says_so(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    store = UnavailableStore()
    forward, upstream, counters = with_store(make_forward, clock, store, fail_open=True)
    result = await forward("c", REQUEST)
    assert isinstance(result, Forwarded)
    assert result.rate_limit is None
    assert len(upstream.calls) == 1
    assert (store.asked, counters.rate_limit_store_errors) == (1, 1)


async def test_a_failing_limiter_store_fails_closed_when_the_route_says_so(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    store = UnavailableStore()
    forward, upstream, counters = with_store(make_forward, clock, store, fail_open=False)
    result = await forward("c", REQUEST)
    assert isinstance(result, RateLimitUnavailable)
    assert upstream.calls == []
    assert (store.asked, counters.rate_limit_store_errors) == (1, 1)


def test_a_jittered_policy_needs_a_random_source(make_forward: MakeForward) -> None:
    with pytest.raises(ValueError, match=r"^a jittered retry policy needs a random source$"):
        make_forward(retry=RetryPolicy(jitter=Jitter.FULL))
