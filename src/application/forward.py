"""The use case: forward one client request through limiter -> breaker -> retries -> upstream.

It returns a result value (``Forwarded``, ``RateLimited``, ``CircuitOpen``, ``Saturated`` or
``UpstreamFailed``); turning those into HTTP is the HTTP adapter's job.

Before every attempt the loop asks the breaker (so it stops the moment the breaker opens) and the
bulkhead (so no more than its limit are in flight upstream). Each request has a deadline: an
attempt gets at most the time left and never starts with less than ``min_attempt_seconds``, and
no backoff sleep starts that would leave less than that. A retry also needs room in the retry
budget; without it the request ends with the upstream's last answer. A retryable answer carrying
``Retry-After`` makes the next wait at least that long; when that wait does not fit before the
deadline, retrying stops and the ``Retry-After`` is passed on. The breaker and the bulkhead hear
about every admitted attempt in a ``finally``, so a cancelled call still frees its permit.

The request body is read only once the limiter, the breaker and the bulkhead have admitted the
request (``read_body``), so a refused client never gets to upload; its deadline starts when the
body is in. An answer that breaks HTTP or the adapter's bounds (``UpstreamBadAnswer``) fails the
attempt for the breaker and is never retried. An answer too large to hold comes with a ``rest``
to stream: when it is passed on, the breaker and the bulkhead hear about the attempt when that
stream ends (a cut or oversized stream is a failure, a client that leaves abandons it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

from application.ports import RouteMetrics
from application.route import IDEMPOTENT_METHODS, Route
from domain.breaker import BreakerPermit, BreakerState, CallOutcome, CircuitBreaker
from domain.bulkhead import Bulkhead
from domain.errors import RateLimitStoreUnavailable, UpstreamError
from domain.ports import Body, BodyStream, Clock, Sleeper, UpstreamRequest, UpstreamResponse
from domain.rate_limit import RateLimitDecision
from domain.retry import Jitter, RandomSource

BodyReader = Callable[[], Awaitable[Body]]
"""Reads the client's request body; called once, after admission. Whatever it raises (a body
over the limit, a client that stalls or leaves) propagates to the caller, permits released."""


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
class RateLimitUnavailable:
    """The limiter's storage failed and the route fails closed; nothing was sent upstream."""

    rate_limit: None = None


@dataclass(frozen=True, slots=True)
class CircuitOpen:
    """The breaker refused the first attempt; nothing was sent upstream."""

    state: BreakerState
    retry_after_seconds: float
    rate_limit: RateLimitDecision | None


@dataclass(frozen=True, slots=True)
class Saturated:
    """The upstream already had the bulkhead's maximum of calls in flight; nothing was sent."""

    in_flight_limit: int
    rate_limit: RateLimitDecision | None


@dataclass(frozen=True, slots=True)
class UpstreamFailed:
    """Every attempt the gateway was willing to make failed."""

    reason: str
    """``timeout``, ``connection_error`` or ``http_<status>``: how the last attempt failed."""
    attempts: int
    stopped_by: str
    """Why no further attempt: ``retries_exhausted``, ``not_idempotent``, ``deadline``,
    ``circuit_open``, ``retry_budget``, ``bulkhead`` or ``upstream_retry_after``."""
    breaker_state: BreakerState
    retry_after_seconds: float | None
    rate_limit: RateLimitDecision | None


@dataclass(frozen=True, slots=True)
class BadUpstreamAnswer:
    """The upstream's answer broke HTTP or the gateway's bounds; it is not retried."""

    detail: str
    attempts: int
    breaker_state: BreakerState
    rate_limit: RateLimitDecision | None


ForwardResult = (
    Forwarded
    | RateLimited
    | RateLimitUnavailable
    | CircuitOpen
    | Saturated
    | UpstreamFailed
    | BadUpstreamAnswer
)


class ForwardRequest:
    """Runs client requests for one route."""

    def __init__(
        self,
        route: Route,
        clock: Clock,
        sleeper: Sleeper,
        metrics: RouteMetrics,
        rng: RandomSource | None = None,
    ) -> None:
        if rng is None and route.retry_policy.jitter is not Jitter.NONE:
            raise ValueError("a jittered retry policy needs a random source")
        self._route = route
        self._clock = clock
        self._sleeper = sleeper
        self._metrics = metrics
        self._rng = rng

    @property
    def route(self) -> Route:
        return self._route

    async def __call__(
        self, client_id: str, request: UpstreamRequest, read_body: BodyReader | None = None
    ) -> ForwardResult:
        route = self._route
        metrics = self._metrics
        rate_limit = None
        if route.limiter is not None:
            try:
                rate_limit = await route.limiter.allow_request(client_id)
            except RateLimitStoreUnavailable:
                metrics.rate_limit_store_failed()
                if not route.rate_limit_fail_open:
                    return RateLimitUnavailable()
            else:
                metrics.rate_limit_decided(rate_limit.allowed)
                if not rate_limit.allowed:
                    return RateLimited(rate_limit)

        breaker = route.breaker
        bulkhead = route.bulkhead
        budget = route.retry_budget
        policy = route.retry_policy
        clock = self._clock
        deadline = clock.now() + route.request_timeout_seconds
        attempts = 0
        reason = ""
        delay = 0.0
        while True:
            time_left = deadline - clock.now()
            if attempts and time_left < route.min_attempt_seconds:
                return self._failed(reason, attempts, "deadline", rate_limit)
            permit = breaker.allow_request()
            if not permit.allowed:
                if attempts == 0:
                    metrics.circuit_rejected()
                    return CircuitOpen(permit.state, permit.retry_after_seconds, rate_limit)
                metrics.retry_stopped_by_breaker()
                return self._failed(reason, attempts, "circuit_open", rate_limit)
            if bulkhead is not None and not bulkhead.try_acquire():
                breaker.record(permit, CallOutcome.ABANDONED)
                metrics.bulkhead_rejected()
                if attempts == 0:
                    return Saturated(bulkhead.limit, rate_limit)
                return self._failed(reason, attempts, "bulkhead", rate_limit)
            if attempts == 0:
                if budget is not None:
                    budget.record_request()
            else:
                metrics.retry_attempted()
            attempts += 1
            outcome = CallOutcome.ABANDONED
            response: UpstreamResponse | None = None
            error: UpstreamError | None = None
            streamed = held = False
            try:
                if read_body is not None:
                    request = replace(request, body=await read_body())
                    read_body = None
                    deadline = clock.now() + route.request_timeout_seconds
                    time_left = route.request_timeout_seconds
                response = await route.upstream.send(
                    request, min(route.attempt_timeout_seconds, time_left)
                )
            except UpstreamError as failure:
                outcome = CallOutcome.FAILURE
                reason = failure.kind
                error = failure
            else:
                if response.status >= 500:
                    outcome = CallOutcome.FAILURE
                    reason = f"http_{response.status}"
                else:
                    outcome = CallOutcome.SUCCESS
                    if policy.retries_status(response.status):  # e.g. RETRY_ON_STATUS=429
                        reason = f"http_{response.status}"
                # While the rest of an answer is read, its bulkhead slot stays taken; one passed
                # on as it is (not retried) tells the breaker only when its stream ends.
                held = response.rest is not None
                streamed = held and not policy.retries_status(response.status)
            finally:
                if not streamed:
                    breaker.record(permit, outcome, clock.now() - (deadline - time_left))
                if bulkhead is not None and not held:
                    bulkhead.release()

            upstream_wait = None
            if response is not None:
                metrics.upstream_attempted("http_5xx" if response.status >= 500 else "success")
                if streamed:
                    assert response.rest is not None
                    settled = _SettledAtEnd(
                        response.rest,
                        (breaker, permit, outcome, clock.now() - (deadline - time_left)),
                        bulkhead,
                        metrics,
                    )
                    return Forwarded(replace(response, rest=settled), attempts, rate_limit)
                if not policy.retries_status(response.status):
                    return Forwarded(response, attempts, rate_limit)
                upstream_wait = response.retry_after_seconds
            else:
                metrics.upstream_attempted(reason)
                if error is not None and not error.retryable:
                    return BadUpstreamAnswer(str(error), attempts, breaker.state, rate_limit)

            if attempts > policy.max_retries:
                await _discard(response, bulkhead)
                return self._failed(reason, attempts, "retries_exhausted", rate_limit)
            if not (route.retry_non_idempotent or request.method in IDEMPOTENT_METHODS):
                await _discard(response, bulkhead)  # a POST that failed is not sent twice
                return self._failed(reason, attempts, "not_idempotent", rate_limit)
            if breaker.state is BreakerState.OPEN:
                await _discard(response, bulkhead)
                metrics.retry_stopped_by_breaker()
                return self._failed(reason, attempts, "circuit_open", rate_limit)
            if self._rng is None:
                delay = policy.next_delay(attempts)
            else:
                delay = policy.jittered_delay(attempts, delay, self._rng)
            if upstream_wait is not None and upstream_wait > delay:
                delay = upstream_wait
            if clock.now() + delay + route.min_attempt_seconds > deadline:
                await _discard(response, bulkhead)
                if upstream_wait is not None and upstream_wait >= delay:
                    return self._failed(
                        reason, attempts, "upstream_retry_after", rate_limit, upstream_wait
                    )
                return self._failed(reason, attempts, "deadline", rate_limit)
            if budget is not None and not budget.try_spend():
                metrics.retry_refused()
                if response is None:
                    return self._failed(reason, attempts, "retry_budget", rate_limit)
                if response.rest is not None:  # the breaker heard already; the slot is held
                    rest = _SettledAtEnd(response.rest, None, bulkhead, metrics)
                    response = replace(response, rest=rest)
                return Forwarded(response, attempts, rate_limit)
            await _discard(response, bulkhead)
            await self._sleeper.sleep(delay)

    def _failed(
        self,
        reason: str,
        attempts: int,
        stopped_by: str,
        rate_limit: RateLimitDecision | None,
        retry_after_seconds: float | None = None,
    ) -> UpstreamFailed:
        breaker = self._route.breaker
        state = breaker.state
        if retry_after_seconds is None and state is BreakerState.OPEN:
            retry_after_seconds = breaker.seconds_until_half_open()
        return UpstreamFailed(reason, attempts, stopped_by, state, retry_after_seconds, rate_limit)


async def _discard(response: UpstreamResponse | None, bulkhead: Bulkhead | None) -> None:
    """Give up on the unread rest of an answer that is not passed on, and free its slot."""
    if response is not None and response.rest is not None:
        try:
            await response.rest.aclose()
        finally:
            if bulkhead is not None:
                bulkhead.release()


class _SettledAtEnd:
    """The rest of a streamed answer that tells the breaker and the bulkhead when it ends.

    Read to its end: the attempt's outcome as its status said. Cut short, stalled or over the
    bound (``UpstreamError``): a failure. Closed early (the client left): abandoned. The first
    of these settles the attempt; the others change nothing.
    """

    def __init__(
        self,
        rest: BodyStream,
        attempt: tuple[CircuitBreaker, BreakerPermit, CallOutcome, float] | None,
        bulkhead: Bulkhead | None,
        metrics: RouteMetrics,
    ) -> None:
        self._rest = rest
        self._attempt = attempt
        """The breaker, permit, outcome by status and time to the head; None when the breaker
        heard of the attempt already."""
        self._bulkhead = bulkhead
        self._metrics = metrics
        self._settled = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        outcome = CallOutcome.ABANDONED
        try:
            async for chunk in self._rest:
                yield chunk
            outcome = self._attempt[2] if self._attempt is not None else CallOutcome.SUCCESS
        except UpstreamError as error:
            outcome = CallOutcome.FAILURE
            self._metrics.upstream_answer_cut(error.kind)
            raise
        finally:
            self._settle(outcome)

    async def aclose(self) -> None:
        try:
            await self._rest.aclose()
        finally:
            self._settle(CallOutcome.ABANDONED)

    def _settle(self, outcome: CallOutcome) -> None:
        if self._settled:
            return
        self._settled = True
        if self._attempt is not None:
            breaker, permit, _, duration = self._attempt
            # The attempt's duration is its time to the head and first part: a long body
            # streamed to a slow client says nothing about the upstream's speed.
            breaker.record(permit, outcome, duration)
        if self._bulkhead is not None:
            self._bulkhead.release()
