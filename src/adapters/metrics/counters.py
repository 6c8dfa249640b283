"""Counters of routes and requests, kept as plain integers on the hot path.

``RouteCounters`` implements the application's ``RouteMetrics`` port. Both the JSON snapshot
and the Prometheus exposition (``adapters.metrics.prometheus``) read these same fields, so the
two forms cannot disagree.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

from adapters.metrics.rolling import LATENCY_BOUNDS_SECONDS, new_latency_counts
from domain.breaker import BreakerState

DURATION_BUCKETS_SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
UPSTREAM_OUTCOMES = ("success", "http_5xx", "timeout", "connection_error", "bad_answer")


class RouteCounters:
    """Everything counted about one route since start."""

    def __init__(self, route: str) -> None:
        self.route = route
        self.rate_limit_allowed = 0
        self.rate_limit_blocked = 0
        self.circuit_rejections = 0
        self.retries_stopped_by_breaker = 0
        self.answers_cut: Counter[str] = Counter()
        self.retries = 0
        self.retries_refused = 0
        self.bulkhead_rejections = 0
        self.rate_limit_store_errors = 0
        self.upstream_attempts = dict.fromkeys(UPSTREAM_OUTCOMES, 0)
        self.breaker_transitions: Counter[tuple[str, str]] = Counter()

    def rate_limit_decided(self, allowed: bool) -> None:
        if allowed:
            self.rate_limit_allowed += 1
        else:
            self.rate_limit_blocked += 1

    def circuit_rejected(self) -> None:
        self.circuit_rejections += 1

    def retry_stopped_by_breaker(self) -> None:
        self.retries_stopped_by_breaker += 1

    def upstream_answer_cut(self, kind: str) -> None:
        self.answers_cut[kind] += 1

    def upstream_attempted(self, outcome: str) -> None:
        self.upstream_attempts[outcome] += 1

    def retry_attempted(self) -> None:
        self.retries += 1

    def retry_refused(self) -> None:
        self.retries_refused += 1

    def bulkhead_rejected(self) -> None:
        self.bulkhead_rejections += 1

    def rate_limit_store_failed(self) -> None:
        self.rate_limit_store_errors += 1

    def breaker_transitioned(self, previous: BreakerState, current: BreakerState) -> None:
        self.breaker_transitions[previous.value, current.value] += 1


class UpstreamCounters:
    """What is counted of one upstream rather than of a route: its breaker's transitions.

    Every route to the upstream goes through its one breaker, so a transition is counted once,
    here, and each route's view of the breaker reads it.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.breaker_transitions: Counter[tuple[str, str]] = Counter()
        self.routes: tuple[str, ...] = ()
        """The routes to the upstream in the running table (set when a table is built)."""

    @property
    def route(self) -> str:
        """The routes that share the breaker, for logs: ``users,orders``."""
        return ",".join(self.routes)

    def breaker_transitioned(self, previous: BreakerState, current: BreakerState) -> None:
        self.breaker_transitions[previous.value, current.value] += 1


class RequestStats:
    """Client requests answered under one route label: counts by status class, durations."""

    def __init__(self) -> None:
        self.by_status_class = [0] * 6
        self.duration_bucket_counts = [0] * (len(DURATION_BUCKETS_SECONDS) + 1)
        self.duration_sum_seconds = 0.0
        # Finer buckets for the dashboard's rolling percentiles (adapters.metrics.rolling).
        self.latency_counts = new_latency_counts()

    def record(self, status: int, duration_seconds: float) -> None:
        self.by_status_class[min(status // 100, 5)] += 1
        self.duration_bucket_counts[bisect_left(DURATION_BUCKETS_SECONDS, duration_seconds)] += 1
        self.duration_sum_seconds += duration_seconds
        self.latency_counts[bisect_left(LATENCY_BOUNDS_SECONDS, duration_seconds)] += 1


class HttpMetrics:
    """Every client request, by route label (a proxy route's name, or the matched path)."""

    def __init__(self) -> None:
        self.by_route: dict[str, RequestStats] = {}

    def request_completed(self, route: str, status: int, duration_seconds: float) -> None:
        stats = self.by_route.get(route)
        if stats is None:
            stats = self.by_route[route] = RequestStats()
        stats.record(status, duration_seconds)

    def stats(self, route: str) -> RequestStats:
        return self.by_route.get(route) or RequestStats()
