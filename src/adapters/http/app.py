"""The FastAPI app factory: health, metrics, one proxy endpoint per route, problem+json errors.

The composition root (``gateway.containers``) builds the routes and hands them here; nothing
in this module constructs an adapter or reads settings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from adapters.dashboard.stream import DashboardHub
from adapters.dashboard.web import add_dashboard
from adapters.http.client_identity import ClientIdentity
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
from adapters.metrics.counters import HttpMetrics, RouteCounters
from adapters.metrics.prometheus import RouteView, exposition, new_registry
from application.forward import ForwardRequest
from domain.breaker import BreakerState
from domain.ports import Clock

if TYPE_CHECKING:
    from adapters.http.admin import AdminApi

Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ProxiedRoute:
    """A route's use case with the counters its policies report to."""

    forward: ForwardRequest
    counters: RouteCounters


def create_app(
    *,
    routes: Sequence[ProxiedRoute],
    identity: ClientIdentity,
    clock: Clock,
    max_request_body_bytes: int = 10 * 1024 * 1024,
    client_timeout_seconds: float = 10.0,
    http_metrics: HttpMetrics,
    logger: Any,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    dashboard: DashboardHub | None = None,
    admin: AdminApi | None = None,
    admin_audit: AdminAudit | None = None,
) -> FastAPI:
    """A gateway app serving ``routes``; hooks run in its lifespan.

    With a ``dashboard`` hub it also serves ``/dashboard`` and ``/dashboard/events``, and the
    hub publishes while the app runs. ``admin``, when given, adds the admin API to this app;
    ``admin_audit`` adds what operators did to ``/metrics``.
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
    views = [route_view(proxied) for proxied in routes]
    registry = new_registry(views, http_metrics)
    if admin_audit is not None:
        registry.register(AdminAuditCollector(admin_audit))
    if admin is not None:
        admin.install(app)

    fast_routes: list[tuple[str, set[str], ProxyEndpoint]] = []
    for proxied in routes:
        route = proxied.forward.route
        endpoint = ProxyEndpoint(
            proxied.forward, identity, max_request_body_bytes, client_timeout_seconds
        )
        app.add_api_route(
            route.path,
            endpoint.endpoint,
            methods=list(route.methods),
            name=route.name,
            summary=f"Proxy to the upstream's {route.upstream_path}",
            responses=proxy_route_responses(),
            response_class=Response,
        )
        registered = app.router.routes[-1]
        assert isinstance(registered, APIRoute)
        fast_routes.append((route.path, registered.methods or set(), endpoint))

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
            as_json = json_metrics(views, routes, http_metrics)
            if admin_audit is not None:
                as_json["admin"] = admin_audit.as_json()
            return JSONResponse(as_json)
        body, media_type = exposition(registry, openmetrics=wanted == "openmetrics")
        return Response(body, media_type=media_type)

    if dashboard is not None:
        add_dashboard(app, dashboard)

    _install_problem_handlers(app)
    _add_problem_schema(app)
    # Added first, so it runs inside the request context: ids, logs and metrics stay the same.
    app.add_middleware(ProxyRoutes, routes=fast_routes)
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
    """What the metrics read of one route: counters, breaker state, limiter size."""
    route = proxied.forward.route
    limiter = route.limiter

    def breaker_state() -> BreakerState:
        return route.breaker.state

    def tracked_clients() -> int | None:
        return limiter.tracked_clients if limiter is not None else 0

    return RouteView(
        proxied.counters, breaker_state, tracked_clients, route.breaker.current_open_seconds
    )


def json_metrics(
    views: Sequence[RouteView], routes: Sequence[ProxiedRoute], http_metrics: HttpMetrics
) -> dict[str, Any]:
    """The JSON form: the seed's four keys first, for the first (default) route."""
    view, proxied = views[0], routes[0]
    route = proxied.forward.route
    c = view.counters
    limiter = route.limiter
    policy = route.breaker.policy
    requests = http_metrics.stats(route.name).by_status_class
    return {
        "circuit_breaker_state": view.breaker_state().value,
        "total_retries": c.retries,
        "rate_limit_allowed": c.rate_limit_allowed,
        "rate_limit_blocked": c.rate_limit_blocked,
        "route": route.name,
        "circuit_breaker_rejections": c.circuit_rejections,
        "retries_stopped_by_breaker": c.retries_stopped_by_breaker,
        "upstream_answers_cut": dict(c.answers_cut),
        "retries_refused_by_budget": c.retries_refused,
        "bulkhead_rejections": c.bulkhead_rejections,
        "rate_limit_store_errors": c.rate_limit_store_errors,
        "circuit_breaker_transitions": {
            f"{a}->{b}": n for (a, b), n in c.breaker_transitions.items()
        },
        "upstream_attempts": dict(c.upstream_attempts),
        "requests_by_status_class": {f"{i}xx": n for i, n in enumerate(requests) if i},
        "rate_limit_tracked_clients": view.tracked_clients(),
        "circuit_breaker_open_seconds": route.breaker.current_open_seconds(),
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
