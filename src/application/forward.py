"""The use case: forward one client request through limiter -> breaker -> retries -> upstream.

It returns a result value (``Forwarded``, ``RateLimited``, ``CircuitOpen`` or
``UpstreamFailed``); turning those into HTTP is the HTTP adapter's job.

The retry loop asks the breaker before every attempt, so it stops the moment the breaker opens.
Each request has a deadline: an attempt gets at most the time left, and no backoff sleep starts
that would end at or after the deadline. The breaker hears about every admitted attempt in a
``finally``, so a cancelled HALF_OPEN trial still frees its permit.
"""

from __future__ import annotations

from dataclasses import dataclass

from application.ports import RouteMetrics
from application.route import Route
from domain.breaker import BreakerState, CallOutcome
from domain.errors import UpstreamError
from domain.ports import Clock, Sleeper, UpstreamRequest, UpstreamResponse
from domain.rate_limit import RateLimitDecision


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The upstream's answer, to pass to the client unchanged."""

    response: UpstreamResponse
    attempts: int
    rate_limit: RateLimitDecision | None


@dataclass(frozen=True, slots=True)
class RateLimited:
    """The client is over its limit; nothing was sent upstream."""

    rate_limit: RateLimitDecision


@dataclass(frozen=True, slots=True)
class CircuitOpen:
    """The breaker refused the first attempt; nothing was sent upstream."""

    state: BreakerState
    retry_after_seconds: float
    rate_limit: RateLimitDecision | None


@dataclass(frozen=True, slots=True)
class UpstreamFailed:
    """Every attempt the gateway was willing to make failed."""

    reason: str
    """``timeout``, ``connection_error`` or ``http_<status>``: how the last attempt failed."""
    attempts: int
    stopped_by: str
    """Why no further attempt: ``retries_exhausted``, ``deadline`` or ``circuit_open``."""
    breaker_state: BreakerState
    retry_after_seconds: float | None
    rate_limit: RateLimitDecision | None


ForwardResult = Forwarded | RateLimited | CircuitOpen | UpstreamFailed


class ForwardRequest:
    """Runs client requests for one route."""

    def __init__(self, route: Route, clock: Clock, sleeper: Sleeper, metrics: RouteMetrics):
        self._route = route
        self._clock = clock
        self._sleeper = sleeper
        self._metrics = metrics

    @property
    def route(self) -> Route:
        return self._route

    async def __call__(self, client_id: str, request: UpstreamRequest) -> ForwardResult:
        route = self._route
        metrics = self._metrics
        rate_limit = None
        if route.limiter is not None:
            rate_limit = route.limiter.allow_request(client_id)
            metrics.rate_limit_decided(rate_limit.allowed)
            if not rate_limit.allowed:
                return RateLimited(rate_limit)

        breaker = route.breaker
        policy = route.retry_policy
        clock = self._clock
        deadline = clock.now() + route.request_timeout_seconds
        attempts = 0
        reason = ""
        while True:
            time_left = deadline - clock.now()
            if time_left <= 0:
                return self._failed(reason, attempts, "deadline", rate_limit)
            permit = breaker.allow_request()
            if not permit.allowed:
                metrics.circuit_rejected()
                if attempts == 0:
                    return CircuitOpen(permit.state, permit.retry_after_seconds, rate_limit)
                return self._failed(reason, attempts, "circuit_open", rate_limit)
            attempts += 1
            outcome = CallOutcome.ABANDONED
            response: UpstreamResponse | None = None
            try:
                response = await route.upstream.send(
                    request, min(route.attempt_timeout_seconds, time_left)
                )
            except UpstreamError as error:
                outcome = CallOutcome.FAILURE
                reason = error.kind
            else:
                if response.status >= 500:
                    outcome = CallOutcome.FAILURE
                    reason = f"http_{response.status}"
                else:
                    outcome = CallOutcome.SUCCESS
            finally:
                breaker.record(permit, outcome)

            if response is not None:
                metrics.upstream_attempted("http_5xx" if response.status >= 500 else "success")
                if not policy.retries_status(response.status):
                    return Forwarded(response, attempts, rate_limit)
            else:
                metrics.upstream_attempted(reason)

            if attempts > policy.max_retries:
                return self._failed(reason, attempts, "retries_exhausted", rate_limit)
            if breaker.state is BreakerState.OPEN:
                metrics.circuit_rejected()
                return self._failed(reason, attempts, "circuit_open", rate_limit)
            delay = policy.next_delay(attempts)
            if clock.now() + delay >= deadline:
                return self._failed(reason, attempts, "deadline", rate_limit)
            metrics.retry_scheduled()
            await self._sleeper.sleep(delay)

    def _failed(
        self, reason: str, attempts: int, stopped_by: str, rate_limit: RateLimitDecision | None
    ) -> UpstreamFailed:
        breaker = self._route.breaker
        state = breaker.state
        retry_after = breaker.seconds_until_half_open() if state is BreakerState.OPEN else None
        return UpstreamFailed(reason, attempts, stopped_by, state, retry_after, rate_limit)
