"""One dashboard snapshot: rolling figures per upstream and per route, and the recent events.

``SnapshotBuilder.build()`` runs once per dashboard interval (never per request, never per open
stream). Each call reads the cumulative counters of every route (``RouteCounters`` and the
route's ``RequestStats``), adds the reading to that route's ``RollingWindow``, and reports what
changed over the window. An upstream's figures are the sum of its routes' (today one route,
``default``, in front of one upstream, ``backend``; a route table adds entries, not code).

Definitions, over the rolling window (``window_seconds``, 10 s):

- ``requests_per_second``: client requests answered, per second;
- ``error_percent``: the share of them answered 5xx (the gateway's own 503s included);
- ``latency_ms``: p50, p90 and p99 of their durations (None without requests);
- ``rolling``: counts of upstream attempts by outcome (``success`` and ``failures`` by kind),
  calls refused by the breaker (``short_circuited``), clients refused by the limiter
  (``rate_limited``), calls refused by the bulkhead, retries sent, retries refused by the budget.

The breaker state uses the same strings as ``/metrics`` (``CLOSED``, ``OPEN``, ``HALF_OPEN``).
Each upstream also carries ``requests_per_second_history``: one point per second for the last
``history_seconds`` (2 minutes), oldest first, for the page's sparkline.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.event_log import EventLog
from adapters.metrics.counters import HttpMetrics, RouteCounters
from adapters.metrics.rolling import Reading, RollingWindow, WindowDelta, latency_percentile
from domain.breaker import CircuitBreaker
from domain.ports import Clock
from domain.rate_limit import RateLimiter

WINDOW_SECONDS = 10.0
HISTORY_SECONDS = 120
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))

# Positions in a reading's counters; the upstream outcomes follow them.
_REQUESTS, _RESPONSES_5XX = 0, 1
_COUNTER_NAMES = (
    "short_circuited",
    "rate_limited",
    "bulkhead_rejected",
    "retries",
    "retries_refused_by_budget",
)
_FIRST_OUTCOME = 2 + len(_COUNTER_NAMES)


@dataclass(frozen=True, slots=True)
class DashboardRoute:
    """What the dashboard reads of one route: its counters and its policies' live state."""

    name: str
    upstream: str
    """The name of the upstream the route forwards to."""
    counters: RouteCounters
    breaker: CircuitBreaker
    limiter: RateLimiter | None


class SnapshotBuilder:
    """Builds snapshots of ``routes``; call ``build()`` once per interval."""

    def __init__(
        self,
        routes: Sequence[DashboardRoute] | Callable[[], Sequence[DashboardRoute]],
        http_metrics: HttpMetrics,
        events: EventLog,
        clock: Clock,
        interval_seconds: float,
        window_seconds: float = WINDOW_SECONDS,
        history_seconds: int = HISTORY_SECONDS,
    ) -> None:
        """``routes``: the routes, or a function giving the running table's (a reload changes
        them: windows and histories of the names that stay are kept)."""
        self._source = routes if callable(routes) else (lambda: routes)
        self._http_metrics = http_metrics
        self._events = events
        self._clock = clock
        self._interval_seconds = interval_seconds
        self._window_seconds = window_seconds
        self._history_seconds = history_seconds
        self._windows: dict[str, RollingWindow] = {}
        self._history: dict[str, deque[float]] = {}
        self._adopted: Sequence[DashboardRoute] | None = None
        self._adopt(self._source())
        self._next_history_point_at: float | None = None

    def _adopt(self, routes: Sequence[DashboardRoute]) -> None:
        if not routes:
            raise ValueError("a dashboard needs at least one route")
        self._adopted = routes
        self._routes = {route.name: route for route in routes}
        self._upstreams: dict[str, list[DashboardRoute]] = {}
        for route in routes:
            self._upstreams.setdefault(route.upstream, []).append(route)
        self._outcomes = {route.name: tuple(route.counters.upstream_attempts) for route in routes}
        self._windows = {
            name: self._windows.get(name) or RollingWindow(self._window_seconds)
            for name in self._routes
        }
        self._history = {
            name: self._history.get(name) or deque(maxlen=self._history_seconds)
            for name in self._upstreams
        }

    def build(self) -> dict[str, Any]:
        routes = self._source()
        if routes is not self._adopted:
            self._adopt(routes)
        now = self._clock.now()
        deltas: dict[str, WindowDelta] = {}
        for name, route in self._routes.items():
            window = self._windows[name]
            window.add(self._read(route, now))
            deltas[name] = window.delta()

        routes_out: dict[str, Any] = {}
        for name, route in self._routes.items():
            figures = self._figures(
                [deltas[name]], self._outcomes[name], route.breaker, [route.limiter]
            )
            routes_out[name] = {"upstream": route.upstream, **figures}

        add_history_point = self._history_point_due(now)
        upstreams_out: dict[str, Any] = {}
        for name, routes in self._upstreams.items():
            # Routes of one upstream share its breaker.
            figures = self._figures(
                [deltas[route.name] for route in routes],
                self._outcomes[routes[0].name],
                routes[0].breaker,
                [route.limiter for route in routes],
            )
            history = self._history[name]
            if add_history_point:
                history.append(figures["requests_per_second"])
            upstreams_out[name] = {
                **figures,
                "routes": [route.name for route in routes],
                "requests_per_second_history": list(history),
            }
        return {
            "interval_seconds": self._interval_seconds,
            "window_seconds": self._window_seconds,
            "history_seconds": self._history_seconds,
            "upstreams": upstreams_out,
            "routes": routes_out,
            "events": self._events.recent(),
        }

    def _history_point_due(self, now: float) -> bool:
        due = self._next_history_point_at
        if due is not None and now < due:
            return False
        due = now + 1.0 if due is None else due + 1.0
        self._next_history_point_at = due if due > now else now + 1.0
        return True

    def _read(self, route: DashboardRoute, now: float) -> Reading:
        counters = route.counters
        stats = self._http_metrics.stats(route.name)
        by_class = stats.by_status_class
        attempts = counters.upstream_attempts
        return Reading(
            now,
            (
                sum(by_class),
                by_class[5],
                counters.circuit_rejections,
                counters.rate_limit_blocked,
                counters.bulkhead_rejections,
                counters.retries,
                counters.retries_refused,
                *(attempts.get(outcome, 0) for outcome in self._outcomes[route.name]),
            ),
            tuple(stats.latency_counts),
        )

    def _figures(
        self,
        deltas: Sequence[WindowDelta],
        outcomes: Sequence[str],
        breaker: CircuitBreaker,
        limiters: Sequence[RateLimiter | None],
    ) -> dict[str, Any]:
        counts = [sum(column) for column in zip(*(d.counters for d in deltas), strict=True)]
        latency = [sum(column) for column in zip(*(d.latency_counts for d in deltas), strict=True)]
        seconds = max((d.seconds for d in deltas), default=0.0)
        requests = counts[_REQUESTS] if counts else 0
        state = breaker.state
        by_outcome = dict(zip(outcomes, counts[_FIRST_OUTCOME:], strict=True))
        success = by_outcome.pop("success", 0)
        return {
            "circuit_breaker_state": state.value,
            "seconds_until_half_open": round(breaker.seconds_until_half_open(), 1),
            "requests_per_second": round(requests / seconds, 2) if seconds > 0 else 0.0,
            "error_percent": round(100 * counts[_RESPONSES_5XX] / requests, 1) if requests else 0.0,
            "latency_ms": {
                label: _milliseconds(latency_percentile(latency, fraction))
                for label, fraction in PERCENTILES
            },
            "rolling": {
                "requests": requests,
                "success": success,
                "failures": by_outcome,
                **dict(zip(_COUNTER_NAMES, counts[2:_FIRST_OUTCOME], strict=True)),
            },
            "rate_limit_tracked_clients": _tracked_clients(limiters),
        }


def _milliseconds(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    milliseconds = seconds * 1000
    digits = max(0, 2 - math.floor(math.log10(milliseconds)))  # three significant figures
    return round(milliseconds, digits)


def _tracked_clients(limiters: Sequence[RateLimiter | None]) -> int | None:
    """Clients the limiters track; None when a shared store cannot say."""
    total = 0
    for limiter in limiters:
        if limiter is None:
            continue
        tracked = limiter.tracked_clients
        if tracked is None:
            return None
        total += tracked
    return total
