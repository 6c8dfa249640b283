"""The one wiring module: settings -> config -> route table -> app.

dependency-injector declares what there is one of (settings, clock, metrics, the event log,
the running route table, the app); the table itself, N routes over M upstreams, is a value that
``gateway.routing.build_table`` builds from the validated config, the same way at start and on
each reload. Stateful objects are Singletons: one per container, hence per app. Upstream pools
are opened and closed by the app's lifespan hooks (``RouteTables.start``/``aclose``). Tests
override providers instead of patching modules: ``container.upstream_factory.override(
providers.Object(every_upstream(fake)))``, ``container.clock.override(...)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from dependency_injector import containers, providers

from adapters.backend_client.aiohttp_upstream import AiohttpUpstream
from adapters.backend_client.httptools_upstream import HttptoolsUpstream
from adapters.backend_client.httpx_upstream import HttpxUpstream
from adapters.backend_client.limits import UpstreamLimits
from adapters.clock.system import SystemClock
from adapters.dashboard.snapshot import DashboardRoute, SnapshotBuilder
from adapters.dashboard.stream import DashboardHub
from adapters.event_log import EventLog
from adapters.http.admin import AdminApi, create_admin_app
from adapters.http.app import create_app
from adapters.http.client_identity import ClientIdentity
from adapters.metrics.admin_audit import AdminAudit
from adapters.metrics.counters import HttpMetrics
from adapters.observability import get_logger
from adapters.rate_limit.memory import InMemoryRateLimiter
from adapters.rate_limit.redis_store import RedisRateLimiter
from adapters.rate_limit.redis_store import client_for as redis_client_for
from domain.breaker import BreakerPolicy, CircuitBreaker
from domain.ports import Clock, Sleeper
from domain.rate_limit import RateLimitAlgorithm, RateLimiter, RateLimitPolicy
from gateway.config import (
    DEFAULT_ROUTE_NAME,
    DEFAULT_UPSTREAM_NAME,
    GATEWAY_PATHS,
    GatewayConfig,
    RateLimitConfig,
    UpstreamConfig,
    default_config,
    load_config,
)
from gateway.routing import (
    BreakersView,
    GatewayTable,
    RouteTables,
    TableDeps,
    UpstreamAdapter,
    UpstreamFactory,
    breaker_policy,
    build_table,
)
from gateway.settings import GatewaySettings

__all__ = ["DEFAULT_ROUTE_NAME", "DEFAULT_UPSTREAM_NAME", "Container", "every_upstream"]

RESERVED_PATHS = GATEWAY_PATHS
"""The gateway's own endpoints, never proxied (``gateway.config`` refuses routes there)."""


def initial_config(settings: GatewaySettings) -> GatewayConfig:
    """The file's config (``GATEWAY_CONFIG``), or the seed's one route without a file."""
    if settings.gateway_config:
        return load_config(settings.gateway_config, settings)
    return default_config(settings)


def build_breaker_policy(settings: GatewaySettings) -> BreakerPolicy:
    """The default upstream's breaker policy from the settings alone."""
    return breaker_policy(default_config(settings).upstreams[DEFAULT_UPSTREAM_NAME].circuit_breaker)


def make_upstream(name: str, config: UpstreamConfig) -> UpstreamAdapter:
    """The client of one upstream, by its ``client`` key."""
    limits = UpstreamLimits(
        max_header_bytes=config.max_response_header_bytes,
        max_headers=config.max_response_headers,
        max_body_bytes=config.max_response_body_bytes,
        stream_idle_timeout_seconds=config.stream_idle_timeout_seconds,
    )
    adapter = _CLIENTS[config.client]
    return adapter(base_url=config.base_url, pool_size=config.pool_size, limits=limits)


_CLIENTS: dict[str, type[HttptoolsUpstream] | type[AiohttpUpstream] | type[HttpxUpstream]] = {
    "httptools": HttptoolsUpstream,
    "aiohttp": AiohttpUpstream,
    "httpx": HttpxUpstream,
}


class Limiters:
    """Builds each route's limiter; with Redis, all of them share one client (one pool)."""

    def __init__(self, settings: GatewaySettings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._client: Any = None

    def __call__(self, route: str, config: RateLimitConfig) -> RateLimiter | None:
        if not config.enabled:
            return None
        policy = RateLimitPolicy(
            config.requests_per_window,
            config.window_seconds,
            RateLimitAlgorithm(config.algorithm),
        )
        settings = self._settings
        if not settings.shared_rate_limit:
            return InMemoryRateLimiter(policy, self._clock)
        timeout = settings.rate_limit_storage_timeout_seconds
        if self._client is None:
            self._client = redis_client_for(settings.rate_limit_storage_url, timeout, 16)
        return RedisRateLimiter(
            self._client,
            policy,
            # A route's clients are its own, and each algorithm keeps its own kind of key.
            f"{settings.rate_limit_key_prefix}{route}:{_KEY_KINDS[policy.algorithm]}:",
            timeout,
            get_logger("gateway.rate_limit"),
            owns_client=False,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


_KEY_KINDS = {RateLimitAlgorithm.SLIDING_LOG: "log", RateLimitAlgorithm.SLIDING_COUNTER: "counter"}


def every_upstream(upstream: UpstreamAdapter) -> UpstreamFactory:
    """An upstream factory that answers every upstream with ``upstream`` (tests' fakes)."""

    def factory(name: str, config: UpstreamConfig) -> UpstreamAdapter:
        return upstream

    return factory


def make_tables(config: GatewayConfig, deps: TableDeps) -> RouteTables:
    return RouteTables(build_table(config, deps), deps, deps.settings.gateway_config or None)


class DashboardRoutes:
    """The running table's routes as the dashboard reads them (one list per table version)."""

    def __init__(self, tables: RouteTables) -> None:
        self._tables = tables
        self._table: GatewayTable | None = None
        self._routes: list[DashboardRoute] = []

    def __call__(self) -> list[DashboardRoute]:
        table = self._tables.table
        if table is not self._table:
            self._table = table
            self._routes = [
                DashboardRoute(
                    name=route.name,
                    upstream=route.upstream.name,
                    counters=route.counters,
                    breaker=route.upstream.breaker,
                    limiter=route.limiter,
                )
                for route in table.routes
            ]
        return self._routes


def build_dashboard(
    settings: GatewaySettings,
    routes: Callable[[], list[DashboardRoute]],
    http_metrics: HttpMetrics,
    events: EventLog,
    clock: Clock,
    sleeper: Sleeper,
) -> DashboardHub | None:
    """The dashboard's hub over ``routes``, or None when the dashboard is off."""
    if not settings.dashboard_enabled:
        return None
    interval = settings.dashboard_interval_seconds
    builder = SnapshotBuilder(routes, http_metrics, events, clock, interval)
    return DashboardHub(builder, sleeper, interval, settings.dashboard_max_streams)


def build_admin(
    settings: GatewaySettings, breakers: Mapping[str, CircuitBreaker], audit: AdminAudit
) -> AdminApi | None:
    """The admin API over every breaker by upstream name, or None when ADMIN_TOKEN is unset."""
    if not settings.admin_enabled:
        return None
    return AdminApi(breakers, settings.admin_token, audit, get_logger("gateway.admin"))


def admin_on_proxy_port(settings: GatewaySettings, admin: AdminApi | None) -> AdminApi | None:
    """The admin API for the proxy's own app: None when it has its own port (ADMIN_PORT)."""
    return None if settings.admin_port else admin


class Container(containers.DeclarativeContainer):
    settings = providers.Singleton(GatewaySettings)
    clock = providers.Singleton(SystemClock)
    config = providers.Singleton(initial_config, settings)
    upstream_factory = providers.Object(make_upstream)
    """Tests override it: ``providers.Object(every_upstream(fake))``."""
    limiters = providers.Singleton(Limiters, settings, clock)

    http_metrics = providers.Singleton(HttpMetrics)
    request_logger = providers.Singleton(get_logger, "gateway.request")
    events = providers.Singleton(EventLog)
    rng = providers.Singleton(random.Random)
    identity = providers.Singleton(
        ClientIdentity, trusted_proxies=settings.provided.trusted_proxies
    )
    table_deps = providers.Singleton(
        TableDeps,
        settings=settings,
        clock=clock,
        sleeper=clock,
        rng=rng,
        events=events,
        identity=identity,
        upstream_factory=upstream_factory,
        limiter_factory=limiters,
    )
    tables = providers.Singleton(make_tables, config, table_deps)
    dashboard = providers.Singleton(
        build_dashboard,
        settings=settings,
        routes=providers.Singleton(DashboardRoutes, tables),
        http_metrics=http_metrics,
        events=events,
        clock=clock,
        # Real time between snapshots even when a test fakes the clock: a fake clock's sleep
        # moves the fake time, and a publishing loop on it would spin and age every window.
        sleeper=providers.Singleton(SystemClock),
    )
    admin_audit = providers.Singleton(AdminAudit, event_log=events)
    admin = providers.Singleton(
        build_admin,
        settings=settings,
        breakers=providers.Singleton(BreakersView, tables),
        audit=admin_audit,
    )
    admin_app = providers.Singleton(
        create_admin_app,
        admin=admin,
        clock=clock,
        http_metrics=http_metrics,
        logger=request_logger,
    )
    app = providers.Singleton(
        create_app,
        tables=tables,
        clock=clock,
        http_metrics=http_metrics,
        logger=request_logger,
        reserved_paths=RESERVED_PATHS,
        on_startup=providers.List(tables.provided.start),
        on_shutdown=providers.List(tables.provided.aclose, limiters.provided.aclose),
        dashboard=dashboard,
        admin=providers.Callable(admin_on_proxy_port, settings, admin),
        admin_audit=admin_audit,
    )
