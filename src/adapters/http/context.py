"""Pure ASGI middleware around every request: its id, its log line and its metrics.

- ``X-Request-ID``: a well-formed id sent by the client (1 to 128 of ``A-Za-z0-9._~:/+=-``) is
  kept so a request can be followed across systems; anything else is replaced by a new one. It is
  put in the request's context (``context_of(scope)``) and on the response.
- One structured log line per request, with what the endpoint left in its context (the proxy
  endpoint adds route, client, attempts, breaker state and the limiter's decision). The context
  is a fresh dict under its own scope key: ``scope["state"]`` is the lifespan state, which
  servers may share between requests.
- Counts by route label and status class, and the duration histogram, in ``HttpMetrics``.

Requests whose header fields add up to more than ``MAX_HEADER_BYTES`` are answered 431 with a
problem body before anything else runs, so an enormous ``X-Forwarded-For`` or cookie is neither
parsed nor forwarded upstream. A request asking for a protocol upgrade (``Upgrade: websocket``,
``h2c``, ...) is answered 501 the same way: the gateway proxies HTTP/1.1 requests only, and says
so in a problem body rather than half-serving it.

When the server itself ends a request (a client whose body stopped arriving gets a 408 from the
server protocol), it leaves that status in the context as ``closed_with`` for the log line.

A response that never started (the client hung up) is logged and counted as 499, nginx's code
for it; an exception that escaped everything as 500.
"""

from __future__ import annotations

import itertools
import re
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.http.problems import problem_response
from adapters.metrics.counters import HttpMetrics
from domain.ports import Clock

_WELL_FORMED = re.compile(rb"[A-Za-z0-9._~:/+=-]{1,128}")
_HEADER = b"x-request-id"
_CONTEXT_KEY = "resilient_gateway.context"
CLIENT_CLOSED_REQUEST = 499
ON_SHUTDOWN_KEY = "resilient_gateway.on_shutdown"
"""Scope key of a callable the server calls when it starts shutting down while this request is
open: an endless answer (the dashboard's event stream) ends itself there, in every worker."""
_NOTHING: dict[str, Any] = {}
MAX_HEADER_BYTES = 32 * 1024


def context_of(scope: Scope) -> dict[str, Any]:
    """This request's context: its id, and what the endpoint reports for the log line."""
    context = scope.get(_CONTEXT_KEY)
    if context is None:
        context = scope[_CONTEXT_KEY] = {}
    return context


def request_id_of(scope: Scope) -> str:
    """The id the middleware gave this request."""
    request_id = context_of(scope).get("request_id")
    return request_id if isinstance(request_id, str) else ""


def route_label(scope: Scope, state: dict[str, Any]) -> str:
    """A bounded label: the proxy route's name, the matched path template, or ``unmatched``."""
    name = state.get("route")
    if isinstance(name, str):
        return name
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, clock: Clock, http_metrics: HttpMetrics, logger: Any):
        self._app = app
        self._clock = clock
        self._metrics = http_metrics
        self._log = logger
        # New ids: 64 random bits per process, then a counter; unique without a system call
        # for randomness on every request (uuid4 was 2 % of the gateway's CPU).
        self._id_prefix = f"{secrets.randbits(64):016x}"
        self._id_sequence = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = self._clock.now()
        request_id = None
        header_bytes = 0
        upgrade = None
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name == _HEADER and request_id is None and _WELL_FORMED.fullmatch(value):
                request_id = value.decode("ascii")
            elif name == b"upgrade":
                upgrade = value
        if request_id is None:
            request_id = f"{self._id_prefix}{next(self._id_sequence):016x}"
        state: dict[str, Any] = {"request_id": request_id}
        scope[_CONTEXT_KEY] = state
        encoded = request_id.encode("ascii")
        status = CLIENT_CLOSED_REQUEST

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _HEADER]
                headers.append((_HEADER, encoded))
                message["headers"] = headers
            await send(message)

        try:
            if header_bytes > MAX_HEADER_BYTES:
                refusal = problem_response(
                    "headers-too-large",
                    431,
                    f"The request's header fields add up to {header_bytes} bytes; "
                    f"at most {MAX_HEADER_BYTES} are accepted.",
                    request_id,
                )
                await refusal(scope, receive, send_with_id)
                return
            if upgrade is not None:
                protocol = upgrade.decode("latin-1")[:40]
                refusal = problem_response(
                    "upgrade-not-supported",
                    501,
                    "The gateway proxies HTTP/1.1 requests only; it does not switch to "
                    f"{protocol!r}.",
                    request_id,
                    headers={"Connection": "close"},
                )
                await refusal(scope, receive, send_with_id)
                return
            await self._app(scope, receive, send_with_id)
        except Exception:
            status = 500
            raise
        finally:
            duration = self._clock.now() - started
            status = state.get("closed_with", status)
            label = route_label(scope, state)
            self._metrics.request_completed(label, status, duration)
            client = scope.get("client")
            extra = state.get("log_extra", _NOTHING)
            if "rate_limit_key" in state:  # a header's value, hashed (never the value itself)
                extra = {**extra, "rate_limit_key": state["rate_limit_key"]}
            self._log.info(
                "request",
                request_id=request_id,
                client=state.get("client") or (client[0] if client else None),
                method=scope["method"],
                path=scope["path"],
                route=label,
                status=status,
                duration_ms=round(duration * 1000, 3),
                attempts=state.get("attempts"),
                breaker_state=state.get("breaker_state"),
                rate_limit=state.get("rate_limit"),
                **extra,
            )
