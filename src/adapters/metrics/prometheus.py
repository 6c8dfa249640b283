"""Prometheus exposition of the route counters, built by ``prometheus_client``.

A custom collector reads the plain counters at scrape time (the hot path only adds to ints).
Each app instance gets its own ``CollectorRegistry``, so tests never share metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from adapters.metrics.counters import DURATION_BUCKETS_SECONDS, HttpMetrics, RouteCounters
from domain.breaker import BreakerState

PROMETHEUS_TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RouteView:
    """What the collector reads of one route: its counters and live state."""

    def __init__(
        self,
        counters: RouteCounters,
        breaker_state: Callable[[], BreakerState],
        tracked_clients: Callable[[], int | None],
        breaker_open_seconds: Callable[[], float] | None = None,
    ) -> None:
        self.counters = counters
        self.breaker_state = breaker_state
        self.tracked_clients = tracked_clients
        self.breaker_open_seconds = breaker_open_seconds


class GatewayCollector:
    """Yields every gateway metric family from the route views."""

    def __init__(self, routes: Sequence[RouteView], http: HttpMetrics) -> None:
        self._routes = routes
        self._http = http

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "gateway_requests",
            "Client requests answered, by status class.",
            labels=["route", "status_class"],
        )
        duration = HistogramMetricFamily(
            "gateway_request_duration_seconds",
            "Time to answer a client request.",
            labels=["route"],
        )
        attempts = CounterMetricFamily(
            "gateway_upstream_attempts",
            "Calls made to the upstream, by outcome.",
            labels=["route", "outcome"],
        )
        retries = CounterMetricFamily(
            "gateway_retries",
            "Attempts after the first sent upstream (retries made).",
            labels=["route"],
        )
        refused = CounterMetricFamily(
            "gateway_retries_refused",
            "Retries not made because the retry budget was spent.",
            labels=["route"],
        )
        saturated = CounterMetricFamily(
            "gateway_bulkhead_rejections",
            "Calls refused because the upstream had its maximum in flight.",
            labels=["route"],
        )
        store_errors = CounterMetricFamily(
            "gateway_rate_limit_store_errors",
            "Rate-limit decisions not made because the storage failed or was too slow.",
            labels=["route"],
        )
        decisions = CounterMetricFamily(
            "gateway_rate_limit_decisions", "Rate-limit decisions.", labels=["route", "decision"]
        )
        tracked = GaugeMetricFamily(
            "gateway_rate_limit_tracked_clients", "Clients the limiter remembers.", labels=["route"]
        )
        state = GaugeMetricFamily(
            "gateway_circuit_breaker_state",
            "1 for the breaker's current state.",
            labels=["route", "state"],
        )
        transitions = CounterMetricFamily(
            "gateway_circuit_breaker_transitions",
            "Breaker state changes.",
            labels=["route", "from", "to"],
        )
        open_time = GaugeMetricFamily(
            "gateway_circuit_breaker_open_seconds",
            "How long the breaker stays OPEN: this opening when OPEN, else the next one.",
            labels=["route"],
        )
        rejections = CounterMetricFamily(
            "gateway_circuit_breaker_rejections",
            "Requests refused by an open breaker before any upstream attempt.",
            labels=["route"],
        )
        stopped = CounterMetricFamily(
            "gateway_retries_stopped_by_breaker",
            "Retries not made because the breaker opened after a real attempt.",
            labels=["route"],
        )
        cut = CounterMetricFamily(
            "gateway_upstream_answers_cut",
            "Streamed answers that failed after their head was passed to the client.",
            labels=["route", "reason"],
        )
        for name, stats in sorted(self._http.by_route.items()):
            for status_class, count in enumerate(stats.by_status_class):
                if status_class:
                    requests.add_metric([name, f"{status_class}xx"], count)
            cumulative = list(accumulate(stats.duration_bucket_counts))
            buckets = [
                (repr(float(bound)), count)
                for bound, count in zip(DURATION_BUCKETS_SECONDS, cumulative, strict=False)
            ]
            buckets.append(("+Inf", cumulative[-1]))
            duration.add_metric([name], buckets, stats.duration_sum_seconds)
        for view in self._routes:
            c = view.counters
            name = c.route
            for outcome, count in c.upstream_attempts.items():
                attempts.add_metric([name, outcome], count)
            retries.add_metric([name], c.retries)
            refused.add_metric([name], c.retries_refused)
            saturated.add_metric([name], c.bulkhead_rejections)
            store_errors.add_metric([name], c.rate_limit_store_errors)
            decisions.add_metric([name, "allowed"], c.rate_limit_allowed)
            decisions.add_metric([name, "blocked"], c.rate_limit_blocked)
            clients = view.tracked_clients()
            if clients is not None:
                tracked.add_metric([name], clients)
            current = view.breaker_state()
            for each in BreakerState:
                state.add_metric([name, each.value], 1 if each is current else 0)
            for (previous, to), count in sorted(c.breaker_transitions.items()):
                transitions.add_metric([name, previous, to], count)
            rejections.add_metric([name], c.circuit_rejections)
            stopped.add_metric([name], c.retries_stopped_by_breaker)
            for kind, count in sorted(c.answers_cut.items()):
                cut.add_metric([name, kind], count)
            if view.breaker_open_seconds is not None:
                open_time.add_metric([name], view.breaker_open_seconds())
        yield from (requests, duration, attempts, retries, decisions, tracked, state)
        yield from (transitions, rejections, stopped, cut, refused, saturated, store_errors)
        yield open_time


def new_registry(routes: Sequence[RouteView], http: HttpMetrics) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(GatewayCollector(routes, http))
    return registry


def exposition(registry: CollectorRegistry, openmetrics: bool) -> tuple[bytes, str]:
    """The registry in the text format asked for, with its content type."""
    if openmetrics:
        return generate_openmetrics(registry), OPENMETRICS_TYPE  # type: ignore[no-untyped-call]
    return generate_latest(registry), PROMETHEUS_TEXT_TYPE
