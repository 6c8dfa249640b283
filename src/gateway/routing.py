"""The running route table, built from the validated config by one function, and its reload.

``build_table`` turns a ``GatewayConfig`` into upstreams (adapter, breaker, bulkhead, retry
budget: one each, shared by every route to the upstream) and routes (limiter, retry policy, use
case, HTTP endpoint: one each), and the matcher over them. Given the table it replaces, it hands
every piece whose policy did not change to the new table, so an OPEN breaker stays OPEN, a
client's window keeps its count and a pool keeps its connections across a reload; counters are
kept by name whatever changed. There is no registry: the previous table is the only memory.

``RouteTables`` holds the table in one attribute that a request reads once at its start (no lock
on one event loop): ``reload()`` parses and validates the whole file first and changes nothing
if it is invalid, then swaps in the new table in one assignment. Requests in flight finish on
the table they started with; adapters and limiters the new table dropped are closed once those
requests are past their deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from adapters.clock.http_dates import wall_clock_now
from adapters.clock.system import SystemClock
from adapters.event_log import EventLog
from adapters.http.client_identity import ClientIdentity
from adapters.http.proxy import ProxyEndpoint
from adapters.metrics.counters import RouteCounters, UpstreamCounters
from adapters.observability import BreakerTransitionReporter, get_logger
from application.forward import ForwardRequest
from application.route import Route
from application.route_table import RouteTable
from domain.breaker import BreakerMode, BreakerPolicy, BreakerState, CircuitBreaker, WindowType
from domain.bulkhead import Bulkhead
from domain.ports import Clock, Sleeper, UpstreamPort
from domain.rate_limit import RateLimiter
from domain.retry import Jitter, RandomSource, RetryPolicy
from domain.retry_budget import RetryBudget, RetryBudgetPolicy
from gateway.config import (
    CircuitBreakerConfig,
    GatewayConfig,
    RateLimitConfig,
    RouteConfig,
    UpstreamConfig,
    load_config,
)
from gateway.settings import GatewaySettings

RETIRED_POLL_SECONDS = 0.5
"""How often a reload's dropped clients check whether the old table's requests are done."""


class UpstreamAdapter(UpstreamPort, Protocol):
    """An upstream client with a pool to open in the event loop and to close."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


UpstreamFactory = Callable[[str, UpstreamConfig], UpstreamAdapter]
"""Builds the client of one upstream from its entry (tests hand in fakes)."""
LimiterFactory = Callable[[str, RateLimitConfig], RateLimiter | None]
"""Builds the limiter of one route from its name and entry; None when it is off."""


@dataclass(frozen=True, slots=True)
class TableDeps:
    """What every table is built with: the container's singletons."""

    settings: GatewaySettings
    clock: Clock
    sleeper: Sleeper
    rng: RandomSource
    events: EventLog
    identity: ClientIdentity
    upstream_factory: UpstreamFactory
    limiter_factory: LimiterFactory


@dataclass(frozen=True, slots=True)
class UpstreamRuntime:
    """One upstream: its client and the policies every route to it shares."""

    name: str
    config: UpstreamConfig
    adapter: UpstreamAdapter
    breaker: CircuitBreaker
    bulkhead: Bulkhead
    retry_budget: RetryBudget
    counters: UpstreamCounters


@dataclass(frozen=True, slots=True)
class RouteRuntime:
    """One route: its use case, its endpoint and what it reports to."""

    config: RouteConfig
    upstream: UpstreamRuntime
    limiter: RateLimiter | None
    forward: ForwardRequest
    counters: RouteCounters
    endpoint: ProxyEndpoint

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def route(self) -> Route:
        return self.forward.route

    @property
    def upstream_counters(self) -> UpstreamCounters:
        return self.upstream.counters


@dataclass(frozen=True, slots=True)
class GatewayTable:
    """Everything one version of the config serves."""

    config: GatewayConfig
    upstreams: dict[str, UpstreamRuntime]
    routes: list[RouteRuntime]
    matcher: RouteTable[ProxyEndpoint]
    version: int
    loaded_at: datetime
    """Wall-clock time the table was built."""
    retired: list[Any] = field(default_factory=list)
    """Adapters and limiters of the previous table that this one no longer uses."""

    @property
    def proxied(self) -> list[RouteRuntime]:
        """What the app reads of each route (metrics, OpenAPI): the routes themselves."""
        return self.routes


def breaker_policy(config: CircuitBreakerConfig) -> BreakerPolicy:
    return BreakerPolicy(
        failure_threshold=config.failure_threshold,
        recovery_timeout_seconds=config.recovery_timeout_seconds,
        half_open_max_calls=config.half_open_max_calls,
        mode=BreakerMode(config.mode),
        failure_rate_threshold_percent=config.failure_rate_threshold,
        sliding_window_type=WindowType(config.sliding_window_type),
        sliding_window_size=config.sliding_window_size,
        minimum_calls=config.minimum_calls,
        slow_call_duration_seconds=config.slow_call_duration_seconds,
        slow_call_rate_threshold_percent=config.slow_call_rate_threshold,
        recovery_backoff_multiplier=config.recovery_backoff_multiplier,
        max_recovery_timeout_seconds=config.max_recovery_timeout_seconds,
    )


def _client_key(config: UpstreamConfig) -> tuple[Any, ...]:
    """What the upstream's client is built from: equal keys can share the client and pool."""
    return (
        config.base_url,
        config.client,
        config.pool_size,
        config.max_response_header_bytes,
        config.max_response_headers,
        config.max_response_body_bytes,
        config.stream_idle_timeout_seconds,
    )


def _build_upstream(
    name: str, config: UpstreamConfig, deps: TableDeps, old: UpstreamRuntime | None
) -> UpstreamRuntime:
    counters = old.counters if old is not None else UpstreamCounters(name)
    if old is not None and _client_key(old.config) == _client_key(config):
        adapter = old.adapter
    else:
        adapter = deps.upstream_factory(name, config)
    if old is not None and old.config.circuit_breaker == config.circuit_breaker:
        breaker = old.breaker
    else:
        breaker = CircuitBreaker(
            breaker_policy(config.circuit_breaker),
            deps.clock,
            on_transition=BreakerTransitionReporter(counters, deps.events, upstream=name),
        )
        if old is not None:  # an operator's decision outlives a policy change
            if old.breaker.state is BreakerState.FORCED_OPEN:
                breaker.force_open()
            elif old.breaker.state is BreakerState.DISABLED:
                breaker.disable()
    if old is not None and old.config.max_concurrent_requests == config.max_concurrent_requests:
        bulkhead = old.bulkhead
    else:
        bulkhead = Bulkhead(config.max_concurrent_requests)
    if old is not None and old.config.retry_budget == config.retry_budget:
        budget = old.retry_budget
    else:
        budget = RetryBudget(
            RetryBudgetPolicy(
                percent=config.retry_budget.percent,
                min_retries_per_second=config.retry_budget.min_retries_per_second,
            ),
            deps.clock,
        )
    return UpstreamRuntime(name, config, adapter, breaker, bulkhead, budget, counters)


def _build_route(
    config: RouteConfig, upstream: UpstreamRuntime, deps: TableDeps, old: RouteRuntime | None
) -> RouteRuntime:
    counters = old.counters if old is not None else RouteCounters(route=config.name)
    if old is not None and old.config.rate_limit == config.rate_limit:
        limiter = old.limiter
    else:
        limiter = deps.limiter_factory(config.name, config.rate_limit)
    retry = config.retry
    route = Route(
        name=config.name,
        path=config.match_path,
        upstream_path=config.target_path,
        upstream=upstream.adapter,
        breaker=upstream.breaker,
        retry_policy=RetryPolicy(
            max_retries=retry.max_retries,
            initial_backoff_seconds=retry.initial_backoff_seconds,
            backoff_multiplier=retry.backoff_multiplier,
            max_backoff_seconds=retry.max_backoff_seconds,
            retry_on_status=frozenset(retry.on_status),
            jitter=Jitter(retry.jitter),
        ),
        limiter=limiter,
        attempt_timeout_seconds=upstream.config.timeout_seconds,
        request_timeout_seconds=config.request_timeout_seconds,
        methods=tuple(config.methods),
        retry_budget=upstream.retry_budget,
        bulkhead=upstream.bulkhead,
        min_attempt_seconds=config.min_attempt_seconds,
        rate_limit_fail_open=config.rate_limit.fail_open,
        prefix=config.is_prefix,
        upstream_name=upstream.name,
        retry_non_idempotent=retry.non_idempotent,
    )
    forward = ForwardRequest(route, deps.clock, deps.sleeper, counters, deps.rng)
    endpoint = ProxyEndpoint(
        forward,
        deps.identity,
        config.max_request_body_bytes,
        deps.settings.client_body_timeout_seconds,
        rate_limit_key_header=config.rate_limit.key_header,
        preserve_host=config.preserve_host,
    )
    return RouteRuntime(config, upstream, limiter, forward, counters, endpoint)


def served_methods(config: RouteConfig) -> tuple[str, ...]:
    """The route's methods, with HEAD wherever GET is (RFC 9110 section 9.3.2)."""
    methods = list(config.methods)
    if "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")
    return tuple(methods)


def build_table(
    config: GatewayConfig, deps: TableDeps, previous: GatewayTable | None = None
) -> GatewayTable:
    """The table ``config`` describes; with ``previous``, its unchanged parts carried over."""
    old_upstreams = previous.upstreams if previous is not None else {}
    upstreams = {
        name: _build_upstream(name, entry, deps, old_upstreams.get(name))
        for name, entry in config.upstreams.items()
    }
    old_routes = {route.name: route for route in previous.routes} if previous else {}
    routes = [
        _build_route(entry, upstreams[entry.upstream], deps, old_routes.get(entry.name))
        for entry in config.routes
    ]
    matcher = RouteTable(
        (route.route.path, route.route.prefix, served_methods(route.config), route.endpoint)
        for route in routes
    )
    for name, upstream in upstreams.items():
        upstream.counters.routes = tuple(r.name for r in routes if r.upstream.name == name)
    retired: list[Any] = []
    if previous is not None:
        kept = {id(upstream.adapter) for upstream in upstreams.values()}
        kept |= {id(route.limiter) for route in routes}
        retired.extend(
            upstream.adapter
            for upstream in previous.upstreams.values()
            if id(upstream.adapter) not in kept
        )
        retired.extend(
            route.limiter
            for route in previous.routes
            if route.limiter is not None and id(route.limiter) not in kept
        )
    version = previous.version + 1 if previous is not None else 1
    return GatewayTable(config, upstreams, routes, matcher, version, wall_clock_now(), retired)


@dataclass
class ReloadStatus:
    """What ``/metrics`` says of the config: where it came from, and the last reload."""

    source: str | None
    last_reload: datetime | None = None
    last_result: str | None = None
    last_error: str | None = None
    reloads: dict[str, int] = field(default_factory=lambda: {"success": 0, "error": 0})


class RouteTables:
    """The running table, swapped whole by ``reload()``."""

    def __init__(
        self,
        table: GatewayTable,
        deps: TableDeps,
        source: str | None,
        load: Callable[[str, GatewaySettings], GatewayConfig] = load_config,
    ) -> None:
        self.table = table
        self._deps = deps
        self._load = load
        self.status = ReloadStatus(source)
        self._log = get_logger("gateway.config")
        self._reloading = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._retired: list[Any] = []
        """Dropped by a reload and not closed yet (closed at shutdown if still here)."""

    @property
    def source(self) -> str | None:
        return self.status.source

    def config_report(self) -> dict[str, Any]:
        """The ``config`` section of ``/metrics``."""
        table, status = self.table, self.status
        return {
            "source": status.source or "environment",
            "version": table.version,
            "loaded_at": _iso(table.loaded_at),
            "routes": len(table.routes),
            "upstreams": len(table.upstreams),
            "last_reload": None
            if status.last_reload is None
            else {"at": _iso(status.last_reload), "result": status.last_result},
            "last_error": status.last_error,
            "reloads": dict(status.reloads),
        }

    def reload_counts(self) -> dict[str, int]:
        return self.status.reloads

    async def start(self) -> None:
        for upstream in self.table.upstreams.values():
            await upstream.adapter.start()

    async def aclose(self) -> None:
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)
        await _close_all(self._retired)
        table = self.table
        for upstream in table.upstreams.values():
            await upstream.adapter.aclose()
        for route in table.routes:
            if route.limiter is not None:
                await route.limiter.aclose()

    async def _close_when_idle(self, closables: list[Any], users: list[ProxyEndpoint]) -> None:
        """Close what a reload dropped once no request that started before it is left: the
        previous table's endpoints are its only users, event streams and long bodies included.
        """
        clock = SystemClock()  # real time, even under a test's fake clock
        while any(endpoint.in_flight for endpoint in users):
            await clock.sleep(RETIRED_POLL_SECONDS)
        mine = [item for item in self._retired if any(item is c for c in closables)]
        self._retired = [item for item in self._retired if not any(item is c for c in mine)]
        await _close_all(mine)

    async def reload(self) -> bool:
        """Read, validate and swap in the file again; False (nothing changed) when invalid."""
        source = self.status.source
        if source is None:
            self._log.warning("config_reload_ignored", reason="no GATEWAY_CONFIG file")
            return False
        async with self._reloading:
            status = self.status
            status.last_reload = wall_clock_now()
            try:
                # Parsed off the event loop: a large file must not stall the requests.
                config = await asyncio.to_thread(self._load, source, self._deps.settings)
                table = build_table(config, self._deps, self.table)
                for upstream in table.upstreams.values():
                    await upstream.adapter.start()
            except Exception as error:  # whatever it is, the old table stays
                status.last_result = "error"
                status.last_error = str(error)
                status.reloads["error"] += 1
                self._log.error("config_reload_failed", error=str(error))
                self._deps.events.append("config_reload", result="error", error=str(error))
                return False
            previous, self.table = self.table, table
            status.last_result = "success"
            status.last_error = None
            status.reloads["success"] += 1
            self._log.info(
                "config_reloaded",
                version=table.version,
                routes=len(table.routes),
                upstreams=len(table.upstreams),
                retired=len(table.retired),
            )
            self._deps.events.append("config_reload", result="success", version=table.version)
            if table.retired:
                self._retired.extend(table.retired)
                users = [route.endpoint for route in previous.routes]
                task = asyncio.create_task(self._close_when_idle(table.retired, users))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            return True


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


async def _close_all(closables: list[Any]) -> None:
    while closables:
        item = closables.pop()
        try:
            await item.aclose()
        except Exception:  # one failing close must not keep the rest open
            get_logger("gateway.config").warning("retired_close_failed", item=repr(item))


class BreakersView(Mapping[str, CircuitBreaker]):
    """The running table's breakers by upstream name, for the admin API (live across reloads)."""

    def __init__(self, tables: RouteTables) -> None:
        self._tables = tables

    def __getitem__(self, name: str) -> CircuitBreaker:
        return self._tables.table.upstreams[name].breaker

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables.table.upstreams)

    def __len__(self) -> int:
        return len(self._tables.table.upstreams)


def config_source(path: str | Path | None) -> str | None:
    return str(path) if path else None
