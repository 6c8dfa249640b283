"""The endpoint for one proxied route, and the mapping of use-case results to HTTP.

This is the hot path: headers are filtered once, bodies pass through as bytes, and the result
types of ``application.forward`` become responses in one ``match``.

Proxied requests are served by ``ProxyRoutes``, a pure ASGI middleware that matches the path
and method in one dict lookup and calls the route's ``ProxyEndpoint`` directly. FastAPI's
router, dependency solver and exception wrapping cost about 30 % of the gateway's CPU per
request (``bench/README.md``) for routes that take no parameters. Behind a ``root_path`` the
fast path steps aside and FastAPI routes as usual. The same
endpoints are registered with FastAPI too, so OpenAPI documents them and anything the fast path
does not take (another method, a trailing slash) gets FastAPI's usual 405 or 404 problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.backend_client.hop_by_hop import HOP_BY_HOP
from adapters.http.client_identity import ClientIdentity
from adapters.http.context import context_of, request_id_of
from adapters.http.problems import problem_response, retry_after_header
from application.forward import (
    CircuitOpen,
    Forwarded,
    ForwardRequest,
    ForwardResult,
    RateLimited,
    RateLimitUnavailable,
    Saturated,
    UpstreamFailed,
)
from domain.breaker import BreakerState
from domain.ports import UpstreamRequest
from domain.rate_limit import RateLimitDecision

_NOT_FORWARDED = HOP_BY_HOP | {"x-request-id", "x-forwarded-for"}
# The server writes its own Date and Server headers; the upstream's would make duplicates.
_NOT_PASSED_BACK = _NOT_FORWARDED | {"date", "server"}


def rate_limit_headers(
    policy_name: str, window_seconds: float, decision: RateLimitDecision
) -> list[tuple[bytes, bytes]]:
    """The IETF draft's structured fields and the older ``RateLimit-*`` trio."""
    reset = str(math.ceil(decision.reset_seconds))
    window = str(math.ceil(window_seconds))
    return [
        (b"ratelimit-policy", f'"{policy_name}";q={decision.limit};w={window}'.encode()),
        (b"ratelimit", f'"{policy_name}";r={decision.remaining};t={reset}'.encode()),
        (b"ratelimit-limit", str(decision.limit).encode()),
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", reset.encode()),
    ]


class ProxyEndpoint:
    """Forwards requests to ``forward.route``.

    What the request log line needs (route, client, attempts, breaker state, the limiter's
    decision) is left in the request's context for ``RequestContextMiddleware``.
    """

    def __init__(self, forward: ForwardRequest, identity: ClientIdentity) -> None:
        self._forward = forward
        self._identity = identity
        self._route = forward.route
        limiter = forward.route.limiter
        self._window = limiter.policy.window_seconds if limiter is not None else 0.0

    async def endpoint(self, request: Request) -> Response:
        """The same, as a FastAPI endpoint."""
        return await self.respond(request.scope, await request.body())

    async def respond(self, scope: Scope, body: bytes) -> Response:
        route = self._route
        request_id = request_id_of(scope)
        peer = scope.get("client")
        peer_host = peer[0] if peer else None
        headers: list[tuple[str, str]] = []
        forwarded_for: list[str] = []
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name == "x-forwarded-for":
                forwarded_for.append(value)
            if name not in _NOT_FORWARDED:
                headers.append((name, value))
        client_id = self._identity.resolve(peer_host, forwarded_for)
        chain = ", ".join([*forwarded_for, peer_host] if peer_host else forwarded_for)
        if chain:
            headers.append(("x-forwarded-for", chain))
        headers.append(("x-request-id", request_id))
        upstream_request = UpstreamRequest(
            scope["method"],
            route.upstream_path,
            scope["query_string"].decode("latin-1"),
            tuple(headers),
            body,
        )
        result = await self._forward(client_id, upstream_request)
        state = context_of(scope)
        state["route"] = route.name
        state["client"] = client_id
        state["attempts"] = getattr(result, "attempts", 0)
        state["breaker_state"] = route.breaker.state.value
        if result.rate_limit is not None:
            state["rate_limit"] = "allowed" if result.rate_limit.allowed else "blocked"
        return to_response(result, request_id, route.name, self._window)


class ProxyRoutes:
    """Pure ASGI middleware: serves the proxied routes' exact paths and methods itself."""

    def __init__(
        self, app: ASGIApp, routes: Iterable[tuple[str, Iterable[str], ProxyEndpoint]]
    ) -> None:
        self._app = app
        self._routes = {path: (frozenset(methods), endpoint) for path, methods, endpoint in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            match = self._routes.get(scope["path"])
            if match is not None and scope["method"] in match[0]:
                body = await _read_body(receive)
                if body is None:
                    return  # the client hung up before its body arrived: nothing to answer
                response = await match[1].respond(scope, body)
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def to_response(result: ForwardResult, request_id: str, policy: str, window: float) -> Response:
    """The HTTP answer for one use-case result."""
    match result:
        case Forwarded(response=upstream):
            response = Response(upstream.body, status_code=upstream.status)
            response.raw_headers.extend(
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in upstream.headers
                if name.lower() not in _NOT_PASSED_BACK
            )
        case RateLimited(rate_limit=decision):
            response = problem_response(
                "rate-limited",
                429,
                f"At most {decision.limit} requests per {window:g} s; retry after the window "
                "slides.",
                request_id,
                headers={"Retry-After": retry_after_header(decision.retry_after_seconds)},
                policy=policy,
                retry_after=math.ceil(decision.retry_after_seconds),
            )
        case CircuitOpen(state=BreakerState.FORCED_OPEN):
            response = problem_response(
                "circuit-forced-open",
                503,
                "An operator forced this upstream's circuit open; calls are refused until an "
                "operator changes it.",
                request_id,
                circuit_breaker_state=BreakerState.FORCED_OPEN.value,
            )
        case CircuitOpen(state=state, retry_after_seconds=retry_after):
            response = problem_response(
                "circuit-open",
                503,
                "The upstream failed repeatedly; calls are refused until it recovers.",
                request_id,
                headers={"Retry-After": retry_after_header(retry_after)},
                circuit_breaker_state=state.value,
                retry_after=max(1, math.ceil(retry_after)),
            )
        case RateLimitUnavailable():
            response = problem_response(
                "rate-limit-unavailable",
                503,
                "The shared rate-limit store did not answer in time, and this gateway fails "
                "closed (RATE_LIMIT_FAIL_OPEN=false).",
                request_id,
                headers={"Retry-After": "1"},
                retry_after=1,
            )
        case Saturated(in_flight_limit=limit):
            response = problem_response(
                "upstream-saturated",
                503,
                f"The upstream already has {limit} calls in flight; try again shortly.",
                request_id,
                headers={"Retry-After": "1"},
                retry_after=1,
            )
        case UpstreamFailed():
            headers = None
            extra: dict[str, object] = {}
            if result.retry_after_seconds is not None:
                headers = {"Retry-After": retry_after_header(result.retry_after_seconds)}
                extra["retry_after"] = max(1, math.ceil(result.retry_after_seconds))
            response = problem_response(
                "upstream-unavailable",
                503,
                f"The upstream failed {result.attempts} time(s), last with {result.reason}; "
                f"stopped: {result.stopped_by}.",
                request_id,
                headers=headers,
                attempts=result.attempts,
                reason=result.reason,
                stopped_by=result.stopped_by,
                circuit_breaker_state=result.breaker_state.value,
                **extra,
            )
    if result.rate_limit is not None:
        response.raw_headers.extend(rate_limit_headers(policy, window, result.rate_limit))
    return response
