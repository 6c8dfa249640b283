"""Rolling windows, latency percentiles, the event log and the dashboard snapshot, on fake time."""

from __future__ import annotations

from bisect import bisect_left
from datetime import UTC, datetime, timedelta

import pytest

from adapters.clock.fake import FakeClock
from adapters.dashboard.snapshot import DashboardRoute, SnapshotBuilder
from adapters.event_log import EventLog
from adapters.metrics.counters import HttpMetrics, RouteCounters
from adapters.metrics.rolling import (
    LATENCY_BOUNDS_SECONDS,
    Reading,
    RollingWindow,
    latency_percentile,
    new_latency_counts,
)
from adapters.observability import BreakerTransitionReporter
from domain.breaker import BreakerPolicy, CallOutcome, CircuitBreaker

NO_LATENCY = tuple(new_latency_counts())


def reading(at: float, *counters: int) -> Reading:
    return Reading(at, counters, NO_LATENCY)


def test_a_window_counts_what_happened_since_its_oldest_kept_reading() -> None:
    window = RollingWindow(10.0)
    for tick in range(5):  # 2 requests per 0.5 s tick
        window.add(reading(tick * 0.5, tick * 2))
    delta = window.delta()
    assert (delta.seconds, delta.counters) == (2.0, (8,))
    assert delta.per_second(0) == 4.0


def test_the_window_slides_and_old_samples_leave() -> None:
    window = RollingWindow(10.0)
    window.add(reading(0.0, 0))
    window.add(reading(0.5, 10))  # ten requests in the first half second, then none
    for tick in range(2, 21):
        window.add(reading(tick * 0.5, 10))
    assert window.delta().counters == (10,)  # at t=10 the burst is still inside
    window.add(reading(10.5, 10))
    assert window.delta().counters == (0,)  # at t=10.5 it has left
    assert window.delta().seconds == 10.0
    window.add(reading(11.0, 13))
    assert window.delta().counters == (3,)


def test_readings_out_of_time_order_are_refused() -> None:
    window = RollingWindow(10.0)
    window.add(reading(5.0, 1))
    with pytest.raises(ValueError, match="time order"):
        window.add(reading(4.0, 2))


def record(counts: list[int], seconds: float) -> None:
    counts[bisect_left(LATENCY_BOUNDS_SECONDS, seconds)] += 1


def test_percentiles_of_a_known_distribution_are_within_one_bucket() -> None:
    counts = new_latency_counts()
    for millisecond in range(1, 1001):  # 1 ms, 2 ms, ... 1000 ms, once each
        record(counts, millisecond / 1000)
    for fraction, exact in [(0.5, 0.5), (0.9, 0.9), (0.99, 0.99), (1.0, 1.0)]:
        value = latency_percentile(counts, fraction)
        assert value is not None
        assert exact <= value <= exact * 2 ** (1 / 16) * 1.0001


def test_percentiles_of_a_skewed_distribution_find_the_tail() -> None:
    counts = new_latency_counts()
    for _ in range(95):
        record(counts, 0.002)
    for _ in range(5):
        record(counts, 0.300)
    assert latency_percentile(counts, 0.5) == pytest.approx(0.002, rel=0.05)
    assert latency_percentile(counts, 0.9) == pytest.approx(0.002, rel=0.05)
    assert latency_percentile(counts, 0.99) == pytest.approx(0.300, rel=0.05)


def test_no_samples_have_no_percentile_and_huge_ones_report_the_top_bound() -> None:
    counts = new_latency_counts()
    assert latency_percentile(counts, 0.5) is None
    record(counts, 3600.0)
    assert latency_percentile(counts, 0.99) == LATENCY_BOUNDS_SECONDS[-1]


def test_the_event_log_keeps_the_last_fifty_with_their_time() -> None:
    start = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    ticks = iter(range(1000))
    log = EventLog(wall_clock=lambda: start + timedelta(seconds=next(ticks)))
    for number in range(60):
        log.append("config_reload", number=number)
    events = log.recent()
    assert [event["number"] for event in events] == list(range(10, 60))
    assert events[0]["time"] == "2026-11-28T12:00:10.000+00:00"
    assert events[-1]["kind"] == "config_reload"


class Gateway:
    """One route's real counters and breaker on a fake clock, as the request path updates them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.counters = RouteCounters("default")
        self.http = HttpMetrics()
        self.events = EventLog()
        self.breaker = CircuitBreaker(
            BreakerPolicy(failure_threshold=3, recovery_timeout_seconds=30.0),
            clock,
            BreakerTransitionReporter(self.counters, self.events, upstream="backend"),
        )
        route = DashboardRoute("default", "backend", self.counters, self.breaker, None)
        self.builder = SnapshotBuilder([route], self.http, self.events, clock, 0.5)

    def answer(self, status: int, seconds: float = 0.010, outcome: str | None = None) -> None:
        if outcome is not None:
            permit = self.breaker.allow_request()
            ok = outcome == "success"
            self.breaker.record(permit, CallOutcome.SUCCESS if ok else CallOutcome.FAILURE)
            self.counters.upstream_attempted(outcome)
        self.http.request_completed("default", status, seconds)


def test_a_snapshot_reports_rates_errors_counts_and_percentiles_per_upstream_and_route() -> None:
    clock = FakeClock()
    gateway = Gateway(clock)
    gateway.builder.build()
    for _ in range(18):
        gateway.answer(200, 0.010, "success")
    gateway.answer(503, 0.200, "timeout")
    gateway.answer(502, 0.200, "http_5xx")
    gateway.counters.rate_limit_decided(allowed=False)
    gateway.answer(429, 0.001)
    gateway.counters.retry_attempted()
    gateway.counters.retry_refused()
    clock.advance(0.5)
    snapshot = gateway.builder.build()

    backend = snapshot["upstreams"]["backend"]
    assert backend["circuit_breaker_state"] == "CLOSED"
    assert backend["requests_per_second"] == 42.0  # 21 answers in 0.5 s
    assert backend["error_percent"] == pytest.approx(100 * 2 / 21, abs=0.05)
    assert backend["rolling"] == {
        "requests": 21,
        "success": 18,
        "failures": {"http_5xx": 1, "timeout": 1, "connection_error": 0, "bad_answer": 0},
        "short_circuited": 0,
        "rate_limited": 1,
        "bulkhead_rejected": 0,
        "retries": 1,
        "retries_refused_by_budget": 1,
    }
    assert backend["latency_ms"]["p50"] == pytest.approx(10, rel=0.05)
    assert backend["latency_ms"]["p99"] == pytest.approx(200, rel=0.05)
    assert backend["routes"] == ["default"]
    route = snapshot["routes"]["default"]
    assert route["upstream"] == "backend"
    assert route["rolling"] == backend["rolling"]


def test_an_open_breaker_shows_its_countdown_and_its_transition_event() -> None:
    clock = FakeClock()
    gateway = Gateway(clock)
    for _ in range(3):
        gateway.answer(503, 0.05, "connection_error")
    gateway.breaker.allow_request()  # refused: counted as short-circuited by the use case
    gateway.counters.circuit_rejected()
    clock.advance(12.0)
    snapshot = gateway.builder.build()
    backend = snapshot["upstreams"]["backend"]
    assert backend["circuit_breaker_state"] == "OPEN"
    assert backend["seconds_until_half_open"] == 18.0
    [event] = snapshot["events"]
    assert (event["kind"], event["upstream"], event["route"]) == (
        "breaker_transition",
        "backend",
        "default",
    )
    assert (event["from_state"], event["to_state"]) == ("CLOSED", "OPEN")
    clock.advance(18.0)
    assert gateway.builder.build()["upstreams"]["backend"]["circuit_breaker_state"] == "HALF_OPEN"


def test_figures_leave_the_window_and_the_sparkline_keeps_two_minutes() -> None:
    clock = FakeClock()
    gateway = Gateway(clock)
    gateway.builder.build()
    for _ in range(20):
        gateway.answer(200, 0.010, "success")
    for _ in range(21):  # 10.5 s of snapshots every 0.5 s
        clock.advance(0.5)
        snapshot = gateway.builder.build()
    backend = snapshot["upstreams"]["backend"]
    assert backend["rolling"]["requests"] == 0
    assert backend["requests_per_second"] == 0.0
    assert backend["latency_ms"] == {"p50": None, "p90": None, "p99": None}
    history = backend["requests_per_second_history"]
    assert len(history) == 11  # one point per second: t = 0, 1, ... 10
    assert max(history) > 0
    for _ in range(400):
        clock.advance(0.5)
        snapshot = gateway.builder.build()
    assert len(snapshot["upstreams"]["backend"]["requests_per_second_history"]) == 120


def test_upstreams_and_routes_are_keyed_by_name_and_an_upstream_sums_its_routes() -> None:
    clock = FakeClock()
    http = HttpMetrics()
    events = EventLog()
    routes = []
    for name, upstream in [("orders", "shop"), ("carts", "shop"), ("users", "accounts")]:
        counters = RouteCounters(name)
        breaker = CircuitBreaker(BreakerPolicy(), clock)
        routes.append(DashboardRoute(name, upstream, counters, breaker, None))
    builder = SnapshotBuilder(routes, http, events, clock, 0.5)
    builder.build()
    for name, answers in [("orders", 3), ("carts", 2), ("users", 7)]:
        for _ in range(answers):
            http.request_completed(name, 200, 0.01)
    clock.advance(1.0)
    snapshot = builder.build()
    assert set(snapshot["routes"]) == {"orders", "carts", "users"}
    assert snapshot["upstreams"]["shop"]["routes"] == ["orders", "carts"]
    assert snapshot["upstreams"]["shop"]["rolling"]["requests"] == 5
    assert snapshot["upstreams"]["accounts"]["requests_per_second"] == 7.0
    assert snapshot["routes"]["carts"]["requests_per_second"] == 2.0
