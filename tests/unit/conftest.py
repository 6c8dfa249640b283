"""Builders for the use case over fakes: a fake clock and a scripted upstream."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings

from adapters.backend_client.fake import FakeUpstream
from adapters.clock.fake import FakeClock
from adapters.metrics.counters import RouteCounters
from adapters.rate_limit.memory import InMemoryRateLimiter
from application.forward import ForwardRequest
from application.route import Route
from domain.breaker import BreakerPolicy, CircuitBreaker
from domain.rate_limit import RateLimitPolicy
from domain.retry import RetryPolicy

MakeForward = Callable[..., tuple[ForwardRequest, FakeUpstream, RouteCounters]]

if "MUTANT_UNDER_TEST" in os.environ:
    # Under `make mutate` (mutmut sets this): the property tests draw the same examples for every
    # mutant and keep no example database between mutants, so a mutant's verdict does not depend
    # on luck or on which mutants ran before it.
    settings.register_profile("mutation", derandomize=True, database=None)
    settings.load_profile("mutation")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_forward(clock: FakeClock) -> MakeForward:
    def build(
        *script: object,
        default: object = 200,
        threshold: int = 5,
        recovery: float = 30.0,
        trials: int = 1,
        retry: RetryPolicy | None = None,
        limit: int | None = None,
        window: float = 60.0,
        attempt_timeout: float = 2.0,
        request_timeout: float = 10.0,
        elapse: float = 0.0,
        rng: random.Random | None = None,
        breaker_policy: BreakerPolicy | None = None,
        **route_parts: Any,
    ) -> tuple[ForwardRequest, FakeUpstream, RouteCounters]:
        upstream = FakeUpstream(script, default=default, clock=clock, elapse_seconds=elapse)  # type: ignore[arg-type]
        counters = RouteCounters("test")
        breaker = CircuitBreaker(
            breaker_policy or BreakerPolicy(threshold, recovery, trials),
            clock,
            counters.breaker_transitioned,
        )
        limiter = InMemoryRateLimiter(RateLimitPolicy(limit, window), clock) if limit else None
        route = Route(
            name="test",
            path="/api/v1/data",
            upstream_path="/flaky-data",
            upstream=upstream,
            breaker=breaker,
            retry_policy=retry or RetryPolicy(),
            limiter=limiter,
            attempt_timeout_seconds=attempt_timeout,
            request_timeout_seconds=request_timeout,
            **route_parts,
        )
        return ForwardRequest(route, clock, clock, counters, rng), upstream, counters

    return build
