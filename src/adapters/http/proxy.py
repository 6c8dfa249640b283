"""The endpoint for one proxied route, and the mapping of use-case results to HTTP.

This is the hot path: headers are filtered once, bodies pass through as bytes, and the result
types of ``application.forward`` become responses in one ``match``.

Proxied requests are served by ``ProxyRoutes``, a pure ASGI middleware that matches the path
and method in one dict lookup and calls the route's ``ProxyEndpoint`` directly. FastAPI's
router, dependency solver and exception wrapping cost about 30 % of the gateway's CPU per
request (``bench/README.md``) for routes that take no parameters. The same endpoints are
registered with FastAPI only so that OpenAPI documents them; anything the fast path does not
take (another method, a trailing slash) gets FastAPI's usual 405 or 404 problem.

What a client controls is bounded here:
- The body is read only after the limiter, breaker and bulkhead admitted the request, never
  beyond ``max_request_body_bytes``: a ``Content-Length`` over it is answered 413 at once, a
  chunked body is counted as it arrives and cut with a 413; either closes the connection. It is
  kept in one buffer (no joined second copy).
- Headers: hop-by-hop fields and every field the client's ``Connection`` names are dropped; the
  client's ``X-Forwarded-*``, ``Forwarded`` and ``X-Real-IP`` are dropped too. The gateway sends
  its own ``X-Forwarded-For`` (the trusted part of the chain, at most 20 hops, then the peer),
  ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` (a trusted proxy's values when the peer is one),
  and ``X-Request-ID``, after that filtering, so no ``Connection`` list can remove them.
Answers too large for the upstream adapter's buffer are streamed: the status and headers go out
first, then the body as it arrives; a stream that breaks off closes the client's connection
(there is no honest way to say so after the head), and counts as the breaker's failure.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.backend_client.hop_by_hop import HOP_BY_HOP, connection_tokens
from adapters.http.client_identity import ClientIdentity
from adapters.http.context import context_of, request_id_of
from adapters.http.problems import problem_response, retry_after_header
from application.forward import (
    BadUpstreamAnswer,
    CircuitOpen,
    Forwarded,
    ForwardRequest,
    ForwardResult,
    RateLimited,
    RateLimitUnavailable,
    Saturated,
    UpstreamFailed,
)
from application.route import Route
from application.route_table import (
    Matched,
    MethodNotAllowed,
    RouteTable,
    has_dot_segment,
    normalise,
    rest_of,
)
from domain.breaker import BreakerState
from domain.errors import UpstreamError
from domain.ports import Body, UpstreamRequest
from domain.rate_limit import RateLimitDecision

# Sent by the client, never forwarded: the gateway writes its own or none.
_OWNED = frozenset(
    {
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | _OWNED
# The server writes its own Date and Server headers; the upstream's would make duplicates.
_NOT_PASSED_BACK = frozenset({"date", "server", "x-request-id"})
# With a limiter, the RateLimit fields are the gateway's: an upstream's would contradict them.
_RATE_LIMIT_FIELDS = frozenset(
    {"ratelimit", "ratelimit-policy", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"}
)
CONNECTION_KEY = "resilient_gateway.connection"
"""Scope key of the server's handle on the client connection (``abort()``, ``lost``), when the
server provides one (``adapters.http.server``)."""


class BodyTooLarge(Exception):
    """The client's body is over the route's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over the limit of {limit} bytes")
        self.limit = limit


class ClientGone(Exception):
    """The client hung up before its body was read."""


class BodyTooSlow(Exception):
    """The client's body did not arrive within the request's deadline."""


def rate_limit_headers(
    policy_name: str, window_seconds: float, decision: RateLimitDecision
) -> list[tuple[bytes, bytes]]:
    """The IETF draft's structured fields and the older ``RateLimit-*`` trio."""
    reset = str(math.ceil(decision.reset_seconds))
    policy, limit, prefix = _fixed_fields(policy_name, decision.limit, window_seconds)
    return [
        policy,
        (b"ratelimit", prefix + f"r={decision.remaining};t={reset}".encode()),
        limit,
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", reset.encode()),
    ]


@functools.lru_cache(maxsize=1024)
def _fixed_fields(
    policy_name: str, limit: int, window_seconds: float
) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes], bytes]:
    """The fields that are the same on every answer of a policy, encoded once."""
    window = math.ceil(window_seconds)
    return (
        (b"ratelimit-policy", f'"{policy_name}";q={limit};w={window}'.encode()),
        (b"ratelimit-limit", str(limit).encode()),
        f'"{policy_name}";'.encode(),
    )


class _BodyReader:
    """Reads one request body from ``receive``, up to ``limit`` bytes, into one buffer."""

    __slots__ = ("_deadline", "_limit", "_receive")

    def __init__(self, receive: Receive, limit: int, deadline_seconds: float) -> None:
        self._receive = receive
        self._limit = limit
        self._deadline = deadline_seconds

    async def __call__(self) -> Body:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        first: bytes = message.get("body", b"")
        if len(first) > self._limit:
            raise BodyTooLarge(self._limit)
        if not message.get("more_body", False):
            return first  # most requests: no timer, no copy
        # The rest of the upload within the request's deadline: however steadily a client
        # trickles, it holds its bulkhead slot (and maybe the breaker's one trial) no longer.
        try:
            async with asyncio.timeout(self._deadline):
                return await self._rest(bytearray(first))
        except TimeoutError:
            raise BodyTooSlow from None

    async def _rest(self, buffer: bytearray) -> Body:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if len(buffer) + len(chunk) > self._limit:
                raise BodyTooLarge(self._limit)
            buffer += chunk
            if not message.get("more_body", False):
                return buffer


class ProxyEndpoint:
    """Forwards requests to ``forward.route``.

    What the request log line needs (route, client, attempts, breaker state, the limiter's
    decision) is left in the request's context for ``RequestContextMiddleware``.
    """

    def __init__(
        self,
        forward: ForwardRequest,
        identity: ClientIdentity,
        max_request_body_bytes: int = 10 * 1024 * 1024,
        client_timeout_seconds: float = 10.0,
        rate_limit_key_header: str | None = None,
        preserve_host: bool = False,
    ) -> None:
        self._forward = forward
        self._identity = identity
        route = forward.route
        self._route = route
        self._max_body = max_request_body_bytes
        self._client_timeout = client_timeout_seconds
        self._key_header = rate_limit_key_header
        self._preserve_host = preserve_host
        self._not_passed_back = _NOT_PASSED_BACK
        if route.limiter is not None:
            self._not_passed_back = _NOT_PASSED_BACK | _RATE_LIMIT_FIELDS
        limiter = route.limiter
        self._window = limiter.policy.window_seconds if limiter is not None else 0.0
        unchanged = route.path if route.path != "/" else ""
        self._forwarded_prefix = (
            route.path if route.prefix and route.upstream_path != unchanged else None
        )
        self.in_flight = 0
        """Requests this endpoint is serving (their streamed answers included), counted by
        ``ProxyRoutes``: a reload closes what it dropped only once the old table's endpoints
        are all idle."""

    @property
    def route(self) -> Route:
        return self._route

    def upstream_path(self, raw_path: str, consumed: int) -> str:
        """The path to send upstream for a request path of which the match took ``consumed``
        (normalised) characters: the route's upstream path, or its prefix replaced."""
        route = self._route
        if not route.prefix:
            return route.upstream_path
        path = route.upstream_path + rest_of(raw_path, consumed)
        if path.startswith("//"):  # "//host/x" reads as an authority to some servers
            return "/" + path.lstrip("/")
        return path or "/"

    async def endpoint(self, request: Request) -> Response:
        """The FastAPI registration, for OpenAPI only (``DocumentedRoute`` never matches):
        ``ProxyRoutes`` serves every request of the route."""
        return problem_response(
            "not-found", 404, "Not Found", request_id_of(request.scope), route=self._route.name
        )

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, upstream_path: str | None = None
    ) -> None:
        route = self._route
        request_id = request_id_of(scope)
        key_header = self._key_header
        key_value = None
        peer = scope.get("client")
        peer_host = peer[0] if peer else None
        headers: list[tuple[str, str]] = []
        forwarded_for: list[str] = []
        forwarded_proto = forwarded_host = None
        named: list[str] = []
        host = ""
        hosts = 0
        declared_length = None
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            if not raw_value.isascii():
                await self._refuse(scope, receive, send, request_id, name)
                return
            value = raw_value.decode("latin-1")
            if name in _NOT_FORWARDED:
                if name == "x-forwarded-for":
                    forwarded_for.append(value)
                elif name == "host":
                    host = value
                    hosts += 1
                elif name == "content-length":
                    declared_length = value
                elif name == "connection":
                    named.extend(connection_tokens(value))
                elif name == "x-forwarded-proto":
                    forwarded_proto = value
                elif name == "x-forwarded-host":
                    forwarded_host = value
                continue
            if name.startswith("x-forwarded-") or ("_" in name and _spoofs_owned(name)):
                continue  # every X-Forwarded-* is the gateway's, under any spelling
            if name == key_header:
                if key_value is not None:  # which one would count, which one authenticate?
                    await self._refuse(scope, receive, send, request_id, name, twice=True)
                    return
                key_value = value
            headers.append((name, value))
        if hosts > 1:
            await self._refuse(scope, receive, send, request_id, "host")
            return
        if named:
            dropped = set(named)
            headers = [(name, value) for name, value in headers if name not in dropped]
        if declared_length is not None and _over(declared_length, self._max_body):
            await self._refuse_body(scope, receive, send, request_id)
            return
        chain = self._identity.forwarded_chain(peer_host, forwarded_for)
        client_id = chain[0] if chain else "unknown"
        if len(chain) > 1:  # vouched for by trusted proxies: their view of scheme and host
            scheme = forwarded_proto or scope.get("scheme", "http")
            host = forwarded_host or host
        else:
            scheme = scope.get("scheme", "http")
        if chain:
            headers.append(("x-forwarded-for", ", ".join(chain)))
        headers.append(("x-forwarded-proto", scheme))
        if host:
            headers.append(("x-forwarded-host", host))
        if self._forwarded_prefix is not None:
            headers.append(("x-forwarded-prefix", self._forwarded_prefix))
        headers.append(("x-request-id", request_id))
        if self._preserve_host and host:
            headers.insert(0, ("host", host))  # first: the adapters send it instead of theirs
        limit_key = client_id if key_value is None else _hashed_key(key_value)
        upstream_request = UpstreamRequest(
            scope["method"],
            route.upstream_path if upstream_path is None else upstream_path,
            scope["query_string"].decode("latin-1"),
            tuple(headers),
        )
        try:
            result = await self._forward(
                limit_key,
                upstream_request,
                _BodyReader(receive, self._max_body, route.request_timeout_seconds),
            )
        except BodyTooLarge:
            await self._refuse_body(scope, receive, send, request_id)
            return
        except BodyTooSlow:
            context_of(scope)["route"] = route.name
            response = problem_response(
                "request-timeout",
                408,
                f"The request body did not arrive within {route.request_timeout_seconds:g} s.",
                request_id,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        except ClientGone:
            return  # the client hung up before its body arrived: nothing to answer
        state = context_of(scope)
        state["route"] = route.name
        state["client"] = client_id
        if key_value is not None:
            state["rate_limit_key"] = limit_key
        state["attempts"] = getattr(result, "attempts", 0)
        state["breaker_state"] = route.breaker.state.value
        if result.rate_limit is not None:
            state["rate_limit"] = "allowed" if result.rate_limit.allowed else "blocked"
        if isinstance(result, Forwarded) and result.response.rest is not None:
            await self._stream(result, scope, send, state)
            return
        response = to_response(result, request_id, route.name, self._window, self._not_passed_back)
        await response(scope, receive, send)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        field: str,
        twice: bool = False,
    ) -> None:
        """A 400 for a request head the gateway will not forward as it is."""
        context_of(scope)["route"] = self._route.name
        if field == "host" or twice:
            detail = f"The request has more than one {field[:60]!r} field."
        else:
            detail = (
                f"The field {field[:60]!r} has a byte outside ASCII; the gateway forwards "
                "field values as ASCII only."
            )
        response = problem_response("invalid-request", 400, detail, request_id)
        await response(scope, receive, send)

    async def _refuse_body(
        self, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        context_of(scope)["route"] = self._route.name
        response = problem_response(
            "body-too-large",
            413,
            f"The request body is over the limit of {self._max_body} bytes.",
            request_id,
            headers={"Connection": "close"},
            limit=self._max_body,
        )
        await response(scope, receive, send)

    async def _stream(
        self, result: Forwarded, scope: Scope, send: Send, state: dict[str, Any]
    ) -> None:
        upstream = result.response
        rest = upstream.rest
        assert rest is not None
        headers = _passed_back(upstream.headers, self._not_passed_back)
        if result.rate_limit is not None:
            headers.extend(rate_limit_headers(self._route.name, self._window, result.rate_limit))
        connection = scope.get(CONNECTION_KEY)
        # No send to the client may stall longer than its timeout: a client that stops reading
        # would otherwise keep the answer's bulkhead slot and upstream connection for ever.
        stall = self._client_timeout
        try:
            async with asyncio.timeout(stall):
                await send(
                    {"type": "http.response.start", "status": upstream.status, "headers": headers}
                )
                if upstream.body:
                    await send(
                        {"type": "http.response.body", "body": upstream.body, "more_body": True}
                    )
            async for chunk in rest:
                if connection is not None and connection.lost:
                    break
                async with asyncio.timeout(stall):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UpstreamError as error:
            state["log_extra"] = {"upstream_cut": error.kind, "upstream_error": str(error)}
            if connection is None:
                raise  # no server handle to cut the connection with: let the server do it
            connection.abort()
        except TimeoutError:
            state["log_extra"] = {"client_stalled_seconds": stall}
            if connection is None:
                raise
            connection.abort()
        finally:
            await rest.aclose()


def _hashed_key(value: str) -> str:
    """A header's value as a rate-limit key: a short hash, so no API key is ever stored in
    Redis or written to a log as it was sent, and any length of value makes a short key."""
    return "key:" + hashlib.blake2b(value.encode("latin-1"), digest_size=8).hexdigest()


def _over(declared: str, limit: int) -> bool:
    """Whether a ``Content-Length`` value is over ``limit`` (a malformed one never reaches us:
    the server's parser refuses it)."""
    return not declared.isdigit() or int(declared) > limit


def _passed_back(
    headers: Iterable[tuple[str, str]], dropped: frozenset[str] = _NOT_PASSED_BACK
) -> list[tuple[bytes, bytes]]:
    return [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in headers
        if name.lower() not in dropped
    ]


def _spoofs_owned(name: str) -> bool:
    """``X_Forwarded_For`` and the like: backends that read ``_`` as ``-`` would believe it."""
    dashed = name.replace("_", "-")
    return dashed in _NOT_FORWARDED or dashed.startswith("x-forwarded-")


class ProxyRoutes:
    """Pure ASGI middleware: serves the route table's paths itself, before FastAPI.

    The table is read once per request from ``tables()`` (a reload swaps it whole); what it does
    not match goes on to the app (the gateway's own endpoints, and FastAPI's 404 problem). The
    gateway's own paths (``reserved``) are never proxied, whatever a catch-all prefix says.
    """

    def __init__(
        self,
        app: ASGIApp,
        tables: Callable[[], RouteTable[ProxyEndpoint]],
        reserved: Iterable[str] = (),
    ) -> None:
        self._app = app
        self._tables = tables
        self._reserved = frozenset(reserved)
        self._reserved_prefixes = tuple(path + "/" for path in self._reserved)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path")
            if raw:
                path = raw.decode("latin-1")
                if "?" in path:  # some ASGI servers and test clients leave the query on it
                    path = path[: path.index("?")]
            else:
                path = scope["path"]
            root_path = scope.get("root_path")
            if root_path and path.startswith(root_path):
                path = path[len(root_path) :]
            normalised = normalise(path)
            if normalised in self._reserved or normalised.startswith(self._reserved_prefixes):
                await self._app(scope, receive, send)
                return
            match = self._tables().match(normalised, scope["method"])
            if type(match) is Matched:
                endpoint: ProxyEndpoint = match.target
                # Only a prefix route sends the client's path on; an exact one sends its own.
                if endpoint.route.prefix and has_dot_segment(path):
                    await _refuse_dot_segment(scope, receive, send, endpoint.route.name)
                    return
                endpoint.in_flight += 1
                try:
                    await endpoint(
                        scope, receive, send, endpoint.upstream_path(path, match.consumed)
                    )
                finally:
                    endpoint.in_flight -= 1
                return
            if type(match) is MethodNotAllowed:
                context_of(scope)["route"] = match.target.route.name
                allowed = match.allowed
                if "GET" in allowed:  # HEAD goes without saying where GET is (as Starlette's)
                    allowed = tuple(method for method in allowed if method != "HEAD")
                response = problem_response(
                    "method-not-allowed",
                    405,
                    "Method Not Allowed",
                    request_id_of(scope),
                    headers={"Allow": ", ".join(allowed)},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


async def _refuse_dot_segment(scope: Scope, receive: Receive, send: Send, route: str) -> None:
    context_of(scope)["route"] = route
    response = problem_response(
        "invalid-path",
        400,
        "The path has a '.' or '..' segment (perhaps percent-encoded); the gateway does not "
        "resolve them, so no request can climb out of a route's prefix.",
        request_id_of(scope),
    )
    await response(scope, receive, send)


def to_response(
    result: ForwardResult,
    request_id: str,
    policy: str,
    window: float,
    not_passed_back: frozenset[str] = _NOT_PASSED_BACK,
) -> Response:
    """The HTTP answer for one use-case result (a streamed answer's head and first part)."""
    match result:
        case Forwarded(response=upstream):
            response = Response(upstream.body, status_code=upstream.status)
            response.raw_headers.extend(_passed_back(upstream.headers, not_passed_back))
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
        case BadUpstreamAnswer(detail=detail):
            response = problem_response(
                "upstream-bad-answer",
                502,
                f"The upstream's answer could not be passed on: {detail}.",
                request_id,
                attempts=result.attempts,
                circuit_breaker_state=result.breaker_state.value,
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
