"""A flood of 100,000 distinct clients through a trusted proxy: bounded memory, released later.

The real app from the container, called as an ASGI app (no sockets, so 100,000 requests take
seconds), with a fake clock so the window can pass at once. Live memory through the app is read
as ``sys.getallocatedblocks()`` (tracing every allocation of 100,000 requests with tracemalloc
takes minutes); the bytes per client are read with tracemalloc on the limiter, the one object
that keeps per-client state.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from asgi_lifespan import LifespanManager
from dependency_injector import providers

from adapters.backend_client.fake import FakeUpstream
from adapters.clock.fake import FakeClock
from domain.ports import UpstreamResponse
from domain.rate_limit import RateLimitPolicy, SlidingWindowLimiter
from gateway.containers import Container, every_upstream
from gateway.settings import GatewaySettings

pytestmark = pytest.mark.slow

CLIENTS = 100_000
BYTES_PER_CLIENT = 1024


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    yield
    structlog.reset_defaults()


async def call(app: Any, forwarded_for: bytes) -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/api/v1/data", "raw_path": b"/api/v1/data",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"gateway"), (b"x-forwarded-for", forwarded_for)],
    }  # fmt: skip
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def test_flood_of_distinct_clients_is_bounded_and_released(quiet_logs: None) -> None:
    clock = FakeClock()
    container = Container()
    settings = GatewaySettings(
        _env_file=None, trusted_proxies="127.0.0.1/32", rate_limit_requests_per_window=10
    )
    container.settings.override(providers.Object(settings))
    container.clock.override(providers.Object(clock))
    upstream = FakeUpstream(default=UpstreamResponse(200), record_calls=False)
    container.upstream_factory.override(providers.Object(every_upstream(upstream)))
    app = container.app()
    limiter = container.tables().table.routes[0].limiter
    assert limiter is not None
    async with LifespanManager(app) as manager:
        await call(manager.app, b"192.0.2.1")  # warm every lazy structure first
        gc.collect()
        before = sys.getallocatedblocks()
        for n in range(CLIENTS):
            assert await call(manager.app, address(n)) == 200
        gc.collect()
        flooded = sys.getallocatedblocks()
        tracked_during = limiter.tracked_clients

        clock.advance(settings.rate_limit_window_seconds)
        await call(manager.app, b"192.0.2.1")
        gc.collect()
        after_window = sys.getallocatedblocks()

    assert tracked_during == CLIENTS + 1
    assert flooded - before >= CLIENTS  # the flood really was remembered...
    assert limiter.tracked_clients == 1  # ...and forgotten after one idle window
    assert after_window - before < (flooded - before) * 0.05


def address(n: int) -> bytes:
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}".encode()


def test_limiter_state_per_client_is_within_the_bound_and_released() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(RateLimitPolicy(10, 60.0), clock)
    clients = [address(n).decode() for n in range(CLIENTS)]
    limiter.allow_request("warm-up")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for client in clients:
            limiter.allow_request(client)
        flooded = tracemalloc.get_traced_memory()[0]
        clock.advance(60.0)
        limiter.allow_request("steady")
        gc.collect()
        after_window = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_client = (flooded - before) / CLIENTS
    assert per_client <= BYTES_PER_CLIENT, f"{per_client:.0f} bytes per tracked client"
    assert after_window - before < 10_000
