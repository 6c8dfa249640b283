"""The flaky backend's FastAPI app: ``/flaky-data``, ``/chaos``, ``/stats`` and ``/health``."""

from __future__ import annotations

import asyncio
import hmac
import json
import random
from dataclasses import asdict, dataclass

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from flaky_backend.settings import BackendSettings


class Chaos(BaseModel):
    """The backend's current misbehaviour."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    failure_rate: float = Field(ge=0, le=1)
    slow_rate: float = Field(ge=0, le=1)
    slow_seconds: float = Field(ge=0, le=300)
    latency_seconds: float = Field(0.0, ge=0, le=300)
    """Added to every answer of /flaky-data."""
    failure_status: int = Field(503, ge=400, le=599)
    fail_next: int = Field(0, ge=0, le=1_000_000)
    """The next N requests fail with failure_status, whatever the rates."""
    retry_after_seconds: int | None = Field(None, ge=0, le=86_400)
    """When set, failures carry ``Retry-After`` with this many seconds."""


class ChaosPatch(BaseModel):
    """A partial change of the chaos settings; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    failure_rate: float | None = Field(None, ge=0, le=1)
    slow_rate: float | None = Field(None, ge=0, le=1)
    slow_seconds: float | None = Field(None, ge=0, le=300)
    latency_seconds: float | None = Field(None, ge=0, le=300)
    failure_status: int | None = Field(None, ge=400, le=599)
    fail_next: int | None = Field(None, ge=0, le=1_000_000)
    retry_after_seconds: int | None = Field(None, ge=0, le=86_400)


@dataclass
class Stats:
    requests: int = 0
    ok: int = 0
    failures: int = 0
    slow: int = 0
    last_request_id: str | None = None


def create_app(settings: BackendSettings | None = None) -> FastAPI:
    settings = settings or BackendSettings()
    app = FastAPI(title="Flaky backend", version="0.1.0")
    startup = Chaos(
        failure_rate=settings.failure_rate,
        slow_rate=settings.slow_rate,
        slow_seconds=settings.slow_seconds,
    )
    state = {"chaos": startup.model_copy()}
    stats = Stats()
    rng = random.Random(settings.seed)
    log = structlog.get_logger("flaky_backend")

    def authorized(request: Request) -> None:
        """Changes to /chaos need the token when one is set (compared in constant time)."""
        if settings.chaos_token is None:
            return
        given = request.headers.get("authorization", "")
        expected = f"Bearer {settings.chaos_token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(
                401,
                "changing /chaos needs Authorization: Bearer <CHAOS_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.get("/flaky-data")
    async def flaky_data(request: Request) -> Response:
        chaos = state["chaos"]
        stats.requests += 1
        number = stats.requests
        stats.last_request_id = request.headers.get("x-request-id")
        if chaos.latency_seconds:
            await asyncio.sleep(chaos.latency_seconds)
        failing = False
        if chaos.fail_next:
            chaos.fail_next -= 1
            failing = True
        elif chaos.failure_rate and rng.random() < chaos.failure_rate:
            failing = True
        if failing:
            stats.failures += 1
            log.info(
                "flaky_data",
                request_id=stats.last_request_id,
                status=chaos.failure_status,
                outcome="injected_failure",
            )
            body = {"error": "injected failure", "request": number}
            headers = None
            if chaos.retry_after_seconds is not None:
                headers = {"Retry-After": str(chaos.retry_after_seconds)}
            return Response(
                json.dumps(body),
                status_code=chaos.failure_status,
                media_type="application/json",
                headers=headers,
            )
        slow = bool(chaos.slow_rate) and rng.random() < chaos.slow_rate
        if slow:
            stats.slow += 1
            await asyncio.sleep(chaos.slow_seconds)
        stats.ok += 1
        log.info(
            "flaky_data",
            request_id=stats.last_request_id,
            status=200,
            outcome="slow" if slow else "ok",
        )
        body = {"data": {"message": "hello from the flaky backend", "request": number}}
        return Response(json.dumps(body), media_type="application/json")

    @app.get("/chaos")
    async def get_chaos() -> Chaos:
        return state["chaos"]

    @app.put("/chaos", dependencies=[Depends(authorized)])
    async def put_chaos(patch: ChaosPatch) -> Chaos:
        changes = patch.model_dump(exclude_unset=True)
        changes = {k: v for k, v in changes.items() if v is not None or k == "retry_after_seconds"}
        state["chaos"] = state["chaos"].model_copy(update=changes)
        return state["chaos"]

    @app.delete("/chaos", dependencies=[Depends(authorized)])
    async def reset_chaos() -> Chaos:
        state["chaos"] = startup.model_copy()
        return state["chaos"]

    @app.get("/stats")
    async def get_stats() -> dict[str, object]:
        return asdict(stats)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
