"""The operator's admin API: read every breaker, force one open, disable it, or reset it.

Served only when ``ADMIN_TOKEN`` is set (otherwise its paths do not exist: 404), on the proxy's
port or on its own (``ADMIN_PORT``, as Envoy's admin interface is, so it need not be exposed
with the proxy). Every request needs ``Authorization: Bearer <token>``, compared in constant
time; a missing or wrong one gets a 401 problem, is counted, and is logged without the value.

- ``GET /admin/breakers``: each breaker by name with its state, mode, window figures and
  current open time.
- ``POST /admin/breakers/{name}`` with ``{"state": "FORCED_OPEN" | "CLOSED" | "DISABLED"}``.
  Each change is logged with the peer it came from and kept in ``AdminAudit`` (``/metrics``).

The API works over a name -> breaker mapping, so a route table with many upstreams adds
entries, not code. A forced state lasts until another change or a restart (nothing persists).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, Literal, NoReturn

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, SecretStr
from starlette.responses import Response

from adapters.http.app import _install_problem_handlers
from adapters.http.context import RequestContextMiddleware, request_id_of
from adapters.http.problems import problem_response
from adapters.metrics.admin_audit import AdminAudit
from adapters.metrics.counters import HttpMetrics
from domain.breaker import BreakerState, CircuitBreaker
from domain.ports import Clock

_ADMIN_STATES = {
    "FORCED_OPEN": CircuitBreaker.force_open,
    "DISABLED": CircuitBreaker.disable,
    "CLOSED": CircuitBreaker.reset,
}


class BreakerChange(BaseModel):
    """The state an operator sets."""

    state: Literal["FORCED_OPEN", "CLOSED", "DISABLED"]


class AdminUnauthorized(Exception):
    """The request had no bearer token, or the wrong one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def breaker_view(breaker: CircuitBreaker) -> dict[str, Any]:
    """What ``GET /admin/breakers`` shows of one breaker."""
    snapshot = breaker.snapshot()
    return {
        "state": snapshot.state.value,
        "mode": snapshot.mode.value,
        "calls": snapshot.calls,
        "failures": snapshot.failures,
        "slow_calls": snapshot.slow_calls,
        "failure_rate_percent": round(snapshot.failure_rate_percent, 3),
        "slow_call_rate_percent": round(snapshot.slow_call_rate_percent, 3),
        "minimum_calls": snapshot.minimum_calls,
        "consecutive_failures": snapshot.consecutive_failures,
        "openings_in_a_row": snapshot.openings_in_a_row,
        "open_seconds": snapshot.open_seconds,
        "seconds_until_half_open": round(snapshot.seconds_until_half_open, 3),
    }


class AdminApi:
    """The admin endpoints over ``breakers``; ``install`` adds them to an app."""

    def __init__(
        self,
        breakers: Mapping[str, CircuitBreaker],
        token: SecretStr,
        audit: AdminAudit,
        logger: Any,
    ) -> None:
        secret = token.get_secret_value()
        if not secret:
            raise ValueError("the admin API needs a token")
        self._breakers = breakers
        self._token = secret.encode("latin-1")
        self._audit = audit
        self._log = logger

    @property
    def audit(self) -> AdminAudit:
        return self._audit

    def authorize(self, request: Request) -> None:
        """Raise ``AdminUnauthorized`` unless the request carries the token."""
        given = request.headers.get("authorization")
        if given is None:
            self._refuse(request, "missing")
        scheme, _, credentials = given.strip().partition(" ")
        # The scheme is case-insensitive (RFC 9110 §11.1); the token is compared in constant time.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credentials.strip().encode("latin-1"), self._token
        ):
            self._refuse(request, "wrong")

    def _refuse(self, request: Request, reason: str) -> NoReturn:
        self._audit.refused()
        self._log.warning(
            "admin_unauthorized", peer=_peer(request), path=request.url.path, reason=reason
        )
        raise AdminUnauthorized(reason)

    def install(self, app: FastAPI) -> None:
        app.include_router(self.router())
        app.add_exception_handler(AdminUnauthorized, _unauthorized)

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(self.authorize)])

        @router.get("/breakers", summary="Every breaker: state, mode, window figures, open time")
        async def list_breakers() -> dict[str, Any]:
            return {
                "breakers": {name: breaker_view(b) for name, b in self._breakers.items()},
            }

        @router.post("/breakers/{name}", summary="Force a breaker open, disable it, or reset it")
        async def change_breaker(name: str, change: BreakerChange, request: Request) -> Any:
            breaker = self._breakers.get(name)
            if breaker is None:
                known = ", ".join(sorted(self._breakers))
                return problem_response(
                    "not-found",
                    404,
                    f"No breaker named {name!r}; known: {known}.",
                    request_id_of(request.scope),
                )
            previous: BreakerState = breaker.state
            _ADMIN_STATES[change.state](breaker)
            peer = _peer(request)
            self._audit.changed(name, previous.value, change.state, peer)
            self._log.warning(
                "admin_breaker_change",
                breaker=name,
                from_state=previous.value,
                to_state=change.state,
                peer=peer,
            )
            return {"name": name, "previous_state": previous.value, **breaker_view(breaker)}

        return router


def _peer(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "unknown"


async def _unauthorized(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminUnauthorized)
    return problem_response(
        "admin-unauthorized",
        401,
        "The admin API needs 'Authorization: Bearer <ADMIN_TOKEN>'"
        + (" and this one is not it." if exc.reason == "wrong" else "."),
        request_id_of(request.scope),
        headers={"WWW-Authenticate": 'Bearer realm="admin"'},
    )


def create_admin_app(
    admin: AdminApi, clock: Clock, http_metrics: HttpMetrics, logger: Any
) -> FastAPI:
    """The admin API alone, for its own listener (``ADMIN_PORT``): ids, logs, problems."""
    app = FastAPI(title="Resilient API gateway: admin", version="0.1.0")
    admin.install(app)
    _install_problem_handlers(app)
    app.add_middleware(
        RequestContextMiddleware, clock=clock, http_metrics=http_metrics, logger=logger
    )
    return app
