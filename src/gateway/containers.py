"""The one wiring module: settings -> clock -> adapters -> domain objects -> use case -> app.

Stateful objects (clock, breaker, limiter, counters, the upstream's connection pool) are
Singletons: one per container, hence per app. The upstream is a Singleton rather than an async
``Resource`` on purpose: an async Resource turns every provider that depends on it async, and
the proxy endpoints would then await a Future per request; its pool is opened and closed by the
app's lifespan hooks instead. Tests override providers (``container.upstream.override(fake)``)
instead of patching modules.
"""

from __future__ import annotations

import functools
import random

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
from adapters.http.app import ProxiedRoute, create_app
from adapters.http.client_identity import ClientIdentity
from adapters.metrics.admin_audit import AdminAudit
from adapters.metrics.counters import HttpMetrics, RouteCounters
from adapters.observability import BreakerTransitionReporter, get_logger
from adapters.rate_limit.memory import InMemoryRateLimiter
from adapters.rate_limit.redis_store import RedisRateLimiter
from application.forward import ForwardRequest
from application.route import Route
from domain.breaker import BreakerMode, BreakerPolicy, CircuitBreaker, WindowType
from domain.bulkhead import Bulkhead
from domain.ports import Clock, Sleeper
from domain.rate_limit import RateLimitAlgorithm, RateLimiter, RateLimitPolicy
from domain.retry import Jitter, RetryPolicy
from domain.retry_budget import RetryBudget, RetryBudgetPolicy
from gateway.settings import GatewaySettings

DEFAULT_ROUTE_NAME = "default"
DEFAULT_UPSTREAM_NAME = "backend"
DEFAULT_ROUTE_PATH = "/api/v1/data"
DEFAULT_UPSTREAM_PATH = "/flaky-data"


def build_breaker_policy(settings: GatewaySettings) -> BreakerPolicy:
    """The breaker's policy from the settings (validated together there already)."""
    return BreakerPolicy(
        failure_threshold=settings.failure_threshold,
        recovery_timeout_seconds=settings.recovery_timeout_seconds,
        half_open_max_calls=settings.half_open_max_calls,
        mode=BreakerMode(settings.breaker_mode),
        failure_rate_threshold_percent=settings.failure_rate_threshold,
        sliding_window_type=WindowType(settings.sliding_window_type),
        sliding_window_size=settings.sliding_window_size,
        minimum_calls=settings.minimum_calls,
        slow_call_duration_seconds=settings.slow_call_duration_seconds,
        slow_call_rate_threshold_percent=settings.slow_call_rate_threshold,
        recovery_backoff_multiplier=settings.recovery_backoff_multiplier,
        max_recovery_timeout_seconds=settings.max_recovery_timeout_seconds,
    )


def build_limiter(settings: GatewaySettings, clock: Clock) -> RateLimiter | None:
    """The limiter for the configured storage, or None when rate limiting is off."""
    if not settings.rate_limit_enabled:
        return None
    policy = RateLimitPolicy(
        settings.rate_limit_requests_per_window,
        settings.rate_limit_window_seconds,
        RateLimitAlgorithm(settings.rate_limit_algorithm),
    )
    if not settings.shared_rate_limit:
        return InMemoryRateLimiter(policy, clock)
    return RedisRateLimiter.from_url(
        settings.rate_limit_storage_url,
        policy,
        settings.rate_limit_key_prefix,
        settings.rate_limit_storage_timeout_seconds,
        get_logger("gateway.rate_limit"),
    )


def build_dashboard(
    settings: GatewaySettings,
    routes: list[DashboardRoute],
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
    settings: GatewaySettings, breakers: dict[str, CircuitBreaker], audit: AdminAudit
) -> AdminApi | None:
    """The admin API over every breaker by upstream name, or None when ADMIN_TOKEN is unset."""
    if not settings.admin_enabled:
        return None
    return AdminApi(breakers, settings.admin_token, audit, get_logger("gateway.admin"))


def admin_on_proxy_port(settings: GatewaySettings, admin: AdminApi | None) -> AdminApi | None:
    """The admin API for the proxy's own app: None when it has its own port (ADMIN_PORT)."""
    return None if settings.admin_port else admin


async def close_limiter(limiter: RateLimiter | None) -> None:
    if limiter is not None:
        await limiter.aclose()


class Container(containers.DeclarativeContainer):
    settings = providers.Singleton(GatewaySettings)
    clock = providers.Singleton(SystemClock)

    upstream_limits = providers.Singleton(
        UpstreamLimits,
        max_header_bytes=settings.provided.max_upstream_header_bytes,
        max_headers=settings.provided.max_upstream_headers,
        max_body_bytes=settings.provided.max_upstream_body_bytes,
    )
    upstream = providers.Selector(
        settings.provided.upstream_client,
        httptools=providers.Singleton(
            HttptoolsUpstream,
            base_url=settings.provided.backend_url,
            pool_size=settings.provided.upstream_pool_size,
            limits=upstream_limits,
        ),
        aiohttp=providers.Singleton(
            AiohttpUpstream,
            base_url=settings.provided.backend_url,
            pool_size=settings.provided.upstream_pool_size,
            limits=upstream_limits,
        ),
        httpx=providers.Singleton(
            HttpxUpstream,
            base_url=settings.provided.backend_url,
            pool_size=settings.provided.upstream_pool_size,
            limits=upstream_limits,
        ),
    )

    http_metrics = providers.Singleton(HttpMetrics)
    request_logger = providers.Singleton(get_logger, "gateway.request")
    counters = providers.Singleton(RouteCounters, route=DEFAULT_ROUTE_NAME)
    events = providers.Singleton(EventLog)
    breaker = providers.Singleton(
        CircuitBreaker,
        policy=providers.Singleton(build_breaker_policy, settings),
        clock=clock,
        on_transition=providers.Singleton(
            BreakerTransitionReporter,
            counters=counters,
            events=events,
            upstream=DEFAULT_UPSTREAM_NAME,
        ),
    )
    limiter = providers.Singleton(build_limiter, settings=settings, clock=clock)
    retry_policy = providers.Singleton(
        RetryPolicy,
        max_retries=settings.provided.max_retries,
        initial_backoff_seconds=settings.provided.initial_backoff_seconds,
        backoff_multiplier=settings.provided.backoff_multiplier,
        max_backoff_seconds=settings.provided.max_backoff_seconds,
        retry_on_status=settings.provided.retry_on_status,
        jitter=providers.Factory(Jitter, settings.provided.backoff_jitter),
    )
    retry_budget = providers.Singleton(
        RetryBudget,
        policy=providers.Singleton(
            RetryBudgetPolicy,
            percent=settings.provided.retry_budget_percent,
            min_retries_per_second=settings.provided.retry_budget_min_retries_per_second,
        ),
        clock=clock,
    )
    bulkhead = providers.Singleton(
        Bulkhead, limit=settings.provided.max_concurrent_upstream_requests
    )
    rng = providers.Singleton(random.Random)
    route = providers.Singleton(
        Route,
        name=DEFAULT_ROUTE_NAME,
        path=DEFAULT_ROUTE_PATH,
        upstream_path=DEFAULT_UPSTREAM_PATH,
        upstream=upstream,
        breaker=breaker,
        retry_policy=retry_policy,
        limiter=limiter,
        attempt_timeout_seconds=settings.provided.backend_timeout_seconds,
        request_timeout_seconds=settings.provided.request_timeout_seconds,
        retry_budget=retry_budget,
        bulkhead=bulkhead,
        min_attempt_seconds=settings.provided.min_attempt_seconds,
        rate_limit_fail_open=settings.provided.rate_limit_fail_open,
    )
    forward = providers.Singleton(
        ForwardRequest, route=route, clock=clock, sleeper=clock, metrics=counters, rng=rng
    )
    identity = providers.Singleton(
        ClientIdentity, trusted_proxies=settings.provided.trusted_proxies
    )
    dashboard = providers.Singleton(
        build_dashboard,
        settings=settings,
        routes=providers.List(
            providers.Singleton(
                DashboardRoute,
                name=DEFAULT_ROUTE_NAME,
                upstream=DEFAULT_UPSTREAM_NAME,
                counters=counters,
                breaker=breaker,
                limiter=limiter,
            )
        ),
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
        breakers=providers.Dict({DEFAULT_UPSTREAM_NAME: breaker}),
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
        routes=providers.List(
            providers.Singleton(ProxiedRoute, forward=forward, counters=counters)
        ),
        identity=identity,
        max_request_body_bytes=settings.provided.max_request_body_bytes,
        client_timeout_seconds=settings.provided.client_body_timeout_seconds,
        clock=clock,
        http_metrics=http_metrics,
        logger=request_logger,
        on_startup=providers.List(upstream.provided.start),
        on_shutdown=providers.List(
            upstream.provided.aclose,
            providers.Callable(functools.partial, close_limiter, limiter),
        ),
        dashboard=dashboard,
        admin=providers.Callable(admin_on_proxy_port, settings, admin),
        admin_audit=admin_audit,
    )
