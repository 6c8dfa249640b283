"""Prometheus exposition of the route counters, built by ``prometheus_client``.

A custom collector reads the plain counters at scrape time (the hot path only adds to ints).
Each app instance gets its own ``CollectorRegistry``, so tests never share metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
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
        upstream: str = "",
        breaker_transitions: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.counters = counters
        self.breaker_state = breaker_state
        self.tracked_clients = tracked_clients
        self.breaker_open_seconds = breaker_open_seconds
        self.upstream = upstream
        """The name of the upstream whose breaker, bulkhead and retry budget the route uses."""
        self.breaker_transitions = (
            breaker_transitions if breaker_transitions is not None else counters.breaker_transitions
        )


class GatewayCollector:
    """Yields every gateway metric family from the route views, read at each scrape.

    Every route family carries ``route`` and ``upstream`` labels. The breaker belongs to the
    upstream: its families (state, transitions, open time) have one series per route, each the
    shared breaker's, so aggregate them with ``max by (upstream)``, not ``sum``.
    """

    def __init__(
        self,
        routes: Callable[[], Sequence[RouteView]],
        http: HttpMetrics,
        reloads: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self._routes = routes
        self._http = http
        self._reloads = reloads

    def collect(self) -> Iterator[Metric]:
        views = self._routes()
        upstream_of = {view.counters.route: view.upstream for view in views}
        requests = CounterMetricFamily(
            "gateway_requests",
            "Client requests answered, by status class.",
            labels=["route", "upstream", "status_class"],
        )
        duration = HistogramMetricFamily(
            "gateway_request_duration_seconds",
            "Time to answer a client request.",
            labels=["route", "upstream"],
        )
        attempts = CounterMetricFamily(
            "gateway_upstream_attempts",
            "Calls made to the upstream, by outcome.",
            labels=["route", "upstream", "outcome"],
        )
        retries = CounterMetricFamily(
            "gateway_retries",
            "Attempts after the first sent upstream (retries made).",
            labels=["route", "upstream"],
        )
        refused = CounterMetricFamily(
            "gateway_retries_refused",
            "Retries not made because the retry budget was spent.",
            labels=["route", "upstream"],
        )
        saturated = CounterMetricFamily(
            "gateway_bulkhead_rejections",
            "Calls refused because the upstream had its maximum in flight.",
            labels=["route", "upstream"],
        )
        store_errors = CounterMetricFamily(
            "gateway_rate_limit_store_errors",
            "Rate-limit decisions not made because the storage failed or was too slow.",
            labels=["route", "upstream"],
        )
        decisions = CounterMetricFamily(
            "gateway_rate_limit_decisions",
            "Rate-limit decisions.",
            labels=["route", "upstream", "decision"],
        )
        tracked = GaugeMetricFamily(
            "gateway_rate_limit_tracked_clients",
            "Clients the limiter remembers.",
            labels=["route", "upstream"],
        )
        state = GaugeMetricFamily(
            "gateway_circuit_breaker_state",
            "1 for the breaker's current state.",
            labels=["route", "upstream", "state"],
        )
        transitions = CounterMetricFamily(
            "gateway_circuit_breaker_transitions",
            "Breaker state changes.",
            labels=["route", "upstream", "from", "to"],
        )
        open_time = GaugeMetricFamily(
            "gateway_circuit_breaker_open_seconds",
            "How long the breaker stays OPEN: this opening when OPEN, else the next one.",
            labels=["route", "upstream"],
        )
        rejections = CounterMetricFamily(
            "gateway_circuit_breaker_rejections",
            "Requests refused by an open breaker before any upstream attempt.",
            labels=["route", "upstream"],
        )
        stopped = CounterMetricFamily(
            "gateway_retries_stopped_by_breaker",
            "Retries not made because the breaker opened after a real attempt.",
            labels=["route", "upstream"],
        )
        cut = CounterMetricFamily(
            "gateway_upstream_answers_cut",
            "Streamed answers that failed after their head was passed to the client.",
            labels=["route", "upstream", "reason"],
        )
        for name, stats in sorted(self._http.by_route.items()):
            upstream = upstream_of.get(name, "")
            for status_class, count in enumerate(stats.by_status_class):
                if status_class:
                    requests.add_metric([name, upstream, f"{status_class}xx"], count)
            cumulative = list(accumulate(stats.duration_bucket_counts))
            buckets = [
                (repr(float(bound)), count)
                for bound, count in zip(DURATION_BUCKETS_SECONDS, cumulative, strict=False)
            ]
            buckets.append(("+Inf", cumulative[-1]))
            duration.add_metric([name, upstream], buckets, stats.duration_sum_seconds)
        for view in views:
            c = view.counters
            name = c.route
            upstream = view.upstream
            for outcome, count in c.upstream_attempts.items():
                attempts.add_metric([name, upstream, outcome], count)
            retries.add_metric([name, upstream], c.retries)
            refused.add_metric([name, upstream], c.retries_refused)
            saturated.add_metric([name, upstream], c.bulkhead_rejections)
            store_errors.add_metric([name, upstream], c.rate_limit_store_errors)
            decisions.add_metric([name, upstream, "allowed"], c.rate_limit_allowed)
            decisions.add_metric([name, upstream, "blocked"], c.rate_limit_blocked)
            clients = view.tracked_clients()
            if clients is not None:
                tracked.add_metric([name, upstream], clients)
            current = view.breaker_state()
            for each in BreakerState:
                state.add_metric([name, upstream, each.value], 1 if each is current else 0)
            for (previous, to), count in sorted(view.breaker_transitions.items()):
                transitions.add_metric([name, upstream, previous, to], count)
            rejections.add_metric([name, upstream], c.circuit_rejections)
            stopped.add_metric([name, upstream], c.retries_stopped_by_breaker)
            for kind, count in sorted(c.answers_cut.items()):
                cut.add_metric([name, upstream, kind], count)
            if view.breaker_open_seconds is not None:
                open_time.add_metric([name, upstream], view.breaker_open_seconds())
        yield from (requests, duration, attempts, retries, decisions, tracked, state)
        yield from (transitions, rejections, stopped, cut, refused, saturated, store_errors)
        yield open_time
        if self._reloads is not None:
            reloads = CounterMetricFamily(
                "gateway_config_reloads",
                "Reloads of the config file (SIGHUP), by result: success or error.",
                labels=["result"],
            )
            for result, count in sorted(self._reloads().items()):
                reloads.add_metric([result], count)
            yield reloads


def new_registry(
    routes: Callable[[], Sequence[RouteView]],
    http: HttpMetrics,
    reloads: Callable[[], Mapping[str, int]] | None = None,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(GatewayCollector(routes, http, reloads))
    return registry


def exposition(registry: CollectorRegistry, openmetrics: bool) -> tuple[bytes, str]:
    """The registry in the text format asked for, with its content type."""
    if openmetrics:
        return generate_openmetrics(registry), OPENMETRICS_TYPE  # type: ignore[no-untyped-call]
    return generate_latest(registry), PROMETHEUS_TEXT_TYPE
