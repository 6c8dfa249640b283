"""The FastAPI app factory: health, metrics, one proxy endpoint per route, problem+json errors.

The composition root (``gateway.containers``) builds the routes and hands them here; nothing
in this module constructs an adapter or reads settings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import Scope

from adapters.dashboard.stream import DashboardHub
from adapters.dashboard.web import add_dashboard
from adapters.http.context import RequestContextMiddleware, request_id_of
from adapters.http.openapi import (
    PROBLEM_SCHEMA,
    gateway_error_responses,
    metrics_responses,
    proxy_route_responses,
)
from adapters.http.problems import problem_response
from adapters.http.proxy import ProxyEndpoint, ProxyRoutes
from adapters.metrics.admin_audit import AdminAudit, AdminAuditCollector
from adapters.metrics.counters import HttpMetrics, RouteCounters, UpstreamCounters
from adapters.metrics.prometheus import RouteView, exposition, new_registry
from application.forward import ForwardRequest
from application.route import Route
from application.route_table import RouteTable
from domain.breaker import BreakerState
from domain.ports import Clock

if TYPE_CHECKING:
    from adapters.http.admin import AdminApi

Hook = Callable[[], Awaitable[None]]


class ProxiedRoute(Protocol):
    """What the app reads of one route: its use case, its endpoint, the counters its policies
    report to (its own and its upstream's)."""

    @property
    def forward(self) -> ForwardRequest: ...

    @property
    def counters(self) -> RouteCounters: ...

    @property
    def endpoint(self) -> ProxyEndpoint: ...

    @property
    def upstream_counters(self) -> UpstreamCounters: ...

    @property
    def route(self) -> Route: ...


class DocumentedRoute(APIRoute):
    """A proxied route in OpenAPI that FastAPI's router never matches: ``ProxyRoutes`` serves
    the running table, so a route a reload removed is no route at all (404, whatever the
    method), not a registration left behind."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return Match.NONE, {}


class ServedTable(Protocol):
    """One version of the route table, as the app reads it."""

    @property
    def matcher(self) -> RouteTable[ProxyEndpoint]: ...

    @property
    def proxied(self) -> Sequence[ProxiedRoute]: ...


class Tables(Protocol):
    """The running table (swapped whole on reload) and what the config's loading reports."""

    @property
    def table(self) -> ServedTable: ...

    def config_report(self) -> dict[str, Any]:
        """The ``config`` section of ``/metrics``."""

    def reload_counts(self) -> Mapping[str, int]:
        """Reloads by result (``success``, ``error``)."""


def create_app(
    *,
    tables: Tables,
    clock: Clock,
    http_metrics: HttpMetrics,
    logger: Any,
    reserved_paths: Sequence[str] = (),
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    dashboard: DashboardHub | None = None,
    admin: AdminApi | None = None,
    admin_audit: AdminAudit | None = None,
) -> FastAPI:
    """A gateway app serving the routes of ``tables.table``; hooks run in its lifespan.

    With a ``dashboard`` hub it also serves ``/dashboard`` and ``/dashboard/events``, and the
    hub publishes while the app runs. ``admin``, when given, adds the admin API to this app;
    ``admin_audit`` adds what operators did to ``/metrics``. ``reserved_paths`` are the
    gateway's own: no route is served there, whatever a catch-all prefix says.
    """
    if dashboard is not None:
        on_startup = [*on_startup, dashboard.start]
        on_shutdown = [dashboard.aclose, *on_shutdown]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for hook in on_startup:
            await hook()
        try:
            yield
        finally:
            for hook in on_shutdown:
                await hook()

    app = FastAPI(
        title="Resilient API gateway",
        version="0.1.0",
        lifespan=lifespan,
        responses=gateway_error_responses(),
        # The gateway reports through its own Prometheus metrics and logs; FastAPI's
        # OpenTelemetry hooks would look up providers and the environment on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # No redirect to the slash-less path: its Location would be built from the client's Host
        # header. A trailing slash is simply another path (404).
        redirect_slashes=False,
    )

    def views() -> list[RouteView]:
        return [route_view(proxied) for proxied in tables.table.proxied]

    registry = new_registry(views, http_metrics, tables.reload_counts)
    if admin_audit is not None:
        registry.register(AdminAuditCollector(admin_audit))
    if admin is not None:
        admin.install(app)

    @app.get("/health", summary="Liveness of the gateway itself")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/metrics",
        summary="Counters as JSON, or Prometheus text when asked for",
        response_class=Response,
        responses=metrics_responses(),
    )
    async def metrics(request: Request) -> Response:
        wanted = preferred_metrics_format(request.headers.get("accept", ""))
        if wanted == "json":
            as_json = json_metrics(tables, http_metrics)
            if admin_audit is not None:
                as_json["admin"] = admin_audit.as_json()
            return JSONResponse(as_json)
        body, media_type = exposition(registry, openmetrics=wanted == "openmetrics")
        return Response(body, media_type=media_type)

    if dashboard is not None:
        add_dashboard(app, dashboard)

    # OpenAPI documents the table the app starts with (ProxyRoutes serves the running one),
    # after the gateway's own endpoints, so that no catch-all prefix hides them from FastAPI.
    for proxied in tables.table.proxied:
        route = proxied.route
        paths = [route.path]
        if route.prefix:
            paths = [route.path, route.path.rstrip("/") + "/{path:path}"]
        for path in paths:
            app.router.add_api_route(
                path,
                proxied.endpoint.endpoint,
                route_class_override=DocumentedRoute,
                methods=list(route.methods),
                name=route.name if path == route.path else f"{route.name}-below",
                summary=f"Proxy to upstream {route.upstream_name}'s {route.upstream_path or '/'}",
                responses=proxy_route_responses(),
                response_class=Response,
            )

    _install_problem_handlers(app)
    _add_problem_schema(app)
    # Added first, so it runs inside the request context: ids, logs and metrics stay the same.
    app.add_middleware(ProxyRoutes, tables=lambda: tables.table.matcher, reserved=reserved_paths)
    app.add_middleware(
        RequestContextMiddleware, clock=clock, http_metrics=http_metrics, logger=logger
    )
    return app


_MEDIA_FORMATS = {
    "application/json": "json",
    "text/plain": "prometheus",
    "application/openmetrics-text": "openmetrics",
}


def preferred_metrics_format(accept: str) -> str:
    """``json``, ``prometheus`` or ``openmetrics``: the Accept header's highest-q choice.

    Wildcards and an empty header mean JSON (what ``curl`` and browsers get); ties keep the
    order the client listed them in.
    """
    best, best_q = "json", 0.0
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        chosen = _MEDIA_FORMATS.get(media.lower())
        if chosen is not None and q > best_q:
            best, best_q = chosen, q
        elif media in ("*/*", "application/*") and q > best_q:
            best, best_q = "json", q
    return best


def route_view(proxied: ProxiedRoute) -> RouteView:
    """What the metrics read of one route: counters, its upstream's breaker, limiter size."""
    route = proxied.route
    limiter = route.limiter

    def breaker_state() -> BreakerState:
        return route.breaker.state

    def tracked_clients() -> int | None:
        return limiter.tracked_clients if limiter is not None else 0

    return RouteView(
        proxied.counters,
        breaker_state,
        tracked_clients,
        route.breaker.current_open_seconds,
        upstream=route.upstream_name,
        breaker_transitions=proxied.upstream_counters.breaker_transitions,
    )


_WORST_FIRST = (
    BreakerState.FORCED_OPEN,
    BreakerState.OPEN,
    BreakerState.HALF_OPEN,
    BreakerState.DISABLED,
    BreakerState.CLOSED,
)


def worst_state(states: Iterable[BreakerState]) -> BreakerState:
    """OPEN (forced or not) before HALF_OPEN before CLOSED: the state to alert on."""
    present = set(states)
    return next((state for state in _WORST_FIRST if state in present), BreakerState.CLOSED)


_COUNTED = (
    ("total_retries", "retries"),
    ("rate_limit_allowed", "rate_limit_allowed"),
    ("rate_limit_blocked", "rate_limit_blocked"),
    ("circuit_breaker_rejections", "circuit_rejections"),
    ("retries_stopped_by_breaker", "retries_stopped_by_breaker"),
    ("retries_refused_by_budget", "retries_refused"),
    ("bulkhead_rejections", "bulkhead_rejections"),
    ("rate_limit_store_errors", "rate_limit_store_errors"),
)


def _route_json(proxied: ProxiedRoute, http_metrics: HttpMetrics) -> dict[str, Any]:
    route = proxied.route
    c = proxied.counters
    requests = http_metrics.stats(route.name).by_status_class
    limiter = route.limiter
    return {
        "upstream": route.upstream_name,
        ("path_prefix" if route.prefix else "path"): route.path,
        "methods": list(route.methods),
        **{key: getattr(c, field) for key, field in _COUNTED},
        "upstream_answers_cut": dict(c.answers_cut),
        "upstream_attempts": dict(c.upstream_attempts),
        "requests_by_status_class": {f"{i}xx": n for i, n in enumerate(requests) if i},
        "rate_limit_tracked_clients": limiter.tracked_clients if limiter is not None else 0,
    }


def json_metrics(tables: Tables, http_metrics: HttpMetrics) -> dict[str, Any]:
    """The JSON form: the seed's four keys first, as totals over every route (the breaker's
    state: the worst of any upstream); then ``upstreams``, ``routes`` and ``config``."""
    proxied = list(tables.table.proxied)
    routes = {p.route.name: _route_json(p, http_metrics) for p in proxied}
    upstreams: dict[str, dict[str, Any]] = {}
    for p in proxied:
        route = p.route
        entry = upstreams.get(route.upstream_name)
        if entry is None:
            breaker = route.breaker
            bulkhead = route.bulkhead
            upstreams[route.upstream_name] = entry = {
                "circuit_breaker_state": breaker.state.value,
                "circuit_breaker_open_seconds": breaker.current_open_seconds(),
                "circuit_breaker_transitions": {
                    f"{a}->{b}": n for (a, b), n in p.upstream_counters.breaker_transitions.items()
                },
                "in_flight": bulkhead.in_flight if bulkhead is not None else None,
                "max_concurrent_requests": bulkhead.limit if bulkhead is not None else None,
                "routes": [],
            }
        entry["routes"].append(route.name)

    def total(key: str) -> Any:
        values = [entry[key] for entry in routes.values()]
        return None if None in values else sum(values)  # None: a shared store cannot say

    first = proxied[0]
    route = first.route
    limiter = route.limiter
    policy = route.breaker.policy
    by_class: dict[str, int] = {}
    cut: dict[str, int] = {}
    attempts: dict[str, int] = {}
    transitions: dict[str, int] = {}
    for entry in routes.values():
        for key, n in entry["requests_by_status_class"].items():
            by_class[key] = by_class.get(key, 0) + n
        for key, n in entry["upstream_answers_cut"].items():
            cut[key] = cut.get(key, 0) + n
        for key, n in entry["upstream_attempts"].items():
            attempts[key] = attempts.get(key, 0) + n
    for upstream in upstreams.values():
        for key, n in upstream["circuit_breaker_transitions"].items():
            transitions[key] = transitions.get(key, 0) + n
    return {
        "circuit_breaker_state": worst_state(p.route.breaker.state for p in proxied).value,
        "total_retries": total("total_retries"),
        "rate_limit_allowed": total("rate_limit_allowed"),
        "rate_limit_blocked": total("rate_limit_blocked"),
        "route": route.name,
        "circuit_breaker_rejections": total("circuit_breaker_rejections"),
        "retries_stopped_by_breaker": total("retries_stopped_by_breaker"),
        "upstream_answers_cut": cut,
        "retries_refused_by_budget": total("retries_refused_by_budget"),
        "bulkhead_rejections": total("bulkhead_rejections"),
        "rate_limit_store_errors": total("rate_limit_store_errors"),
        "circuit_breaker_transitions": transitions,
        "upstream_attempts": attempts,
        "requests_by_status_class": by_class,
        "rate_limit_tracked_clients": total("rate_limit_tracked_clients"),
        "circuit_breaker_open_seconds": max(
            upstream["circuit_breaker_open_seconds"] for upstream in upstreams.values()
        ),
        "settings": {
            "rate_limit_enabled": limiter is not None,
            "rate_limit_requests_per_window": limiter.policy.requests_per_window
            if limiter
            else None,
            "rate_limit_window_seconds": limiter.policy.window_seconds if limiter else None,
            "rate_limit_algorithm": limiter.policy.algorithm.value if limiter else None,
            "failure_threshold": policy.failure_threshold,
            "recovery_timeout_seconds": policy.recovery_timeout_seconds,
            "half_open_max_calls": policy.half_open_max_calls,
            "breaker_mode": policy.mode.value,
            "recovery_backoff_multiplier": policy.recovery_backoff_multiplier,
            "max_recovery_timeout_seconds": policy.max_recovery_timeout_seconds,
            "max_retries": route.retry_policy.max_retries,
            "request_timeout_seconds": route.request_timeout_seconds,
        },
        "upstreams": upstreams,
        "routes": routes,
        "config": tables.config_report(),
    }


def _install_problem_handlers(app: FastAPI) -> None:
    kinds = {404: "not-found", 405: "method-not-allowed"}

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = kinds.get(exc.status_code, "http-error")
        return problem_response(
            kind,
            exc.status_code,
            str(exc.detail),
            request_id_of(request.scope),
            headers=dict(exc.headers or {}),
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = json.loads(json.dumps(exc.errors(), default=str))
        return problem_response(
            "invalid-request",
            422,
            "The request is not valid.",
            request_id_of(request.scope),
            errors=errors,
        )

    async def internal_error(request: Request, exc: Exception) -> Response:
        return problem_response(
            "internal-error", 500, "The gateway failed unexpectedly.", request_id_of(request.scope)
        )

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)


def _add_problem_schema(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                PROBLEM_SCHEMA
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
