"""CPU per request of the gateway's own code path, in process, with and without request logs.

Builds the real app from the container with an upstream that answers at once, and calls the
ASGI app directly (no sockets, no server) so what is measured is the gateway's own work:
routing, request id, client identity, limiter, breaker, response mapping, metrics, and the
structured log line. Each variant runs several rounds, alternating; the best round is kept.

    .venv/bin/python bench/hot_path.py
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from typing import Any

from dependency_injector import providers

from adapters.backend_client.fake import FakeUpstream
from adapters.observability import configure_logging
from domain.ports import UpstreamResponse
from gateway.containers import Container, every_upstream
from gateway.settings import GatewaySettings

REQUESTS = 20_000
ROUNDS = 5


def build_app() -> Any:
    container = Container()
    settings = GatewaySettings(_env_file=None, rate_limit_requests_per_window=10_000_000)
    container.settings.override(providers.Object(settings))
    answer = UpstreamResponse(200, (("content-type", "application/json"),), b'{"data":1}')
    container.upstream_factory.override(
        providers.Object(every_upstream(FakeUpstream(default=answer)))
    )
    return container.app()


async def drive(app: Any, requests: int) -> float:
    scope_base = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/api/v1/data", "raw_path": b"/api/v1/data",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"gateway"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    cpu = time.process_time()
    for _ in range(requests):
        await app(dict(scope_base), receive, send)
    return (time.process_time() - cpu) / requests * 1e6


async def measure(level: str) -> tuple[float, int]:
    """CPU µs per request and log lines written, for a fresh app logging at ``level``.

    The app is built after ``configure_logging`` because structlog caches a logger's
    configuration on its first use.
    """
    sink = io.StringIO()
    stdout, sys.stdout = sys.stdout, sink
    try:
        configure_logging(level, "json")
        app = build_app()
        async with _lifespan(app):
            cost = await drive(app, REQUESTS)
    finally:
        sys.stdout = stdout
    return cost, sink.getvalue().count("\n")


async def main() -> None:
    results: dict[str, list[float]] = {"logging on (INFO, JSON)": [], "logging off (WARNING)": []}
    lines: dict[str, int] = {}
    for _ in range(ROUNDS):
        for variant in results:
            cost, lines[variant] = await measure("INFO" if "INFO" in variant else "WARNING")
            results[variant].append(cost)
    print(f"{REQUESTS} requests per round, best of {ROUNDS} rounds, CPU µs per request")
    for variant, values in results.items():
        print(f"  {variant:26} {min(values):7.1f}   ({lines[variant]} log lines in the last round)")
    on, off = (min(v) for v in results.values())
    print(f"  logging share of the in-process path: {(on - off) / on:.0%}")


class _lifespan:
    def __init__(self, app: Any) -> None:
        from asgi_lifespan import LifespanManager

        self._manager = LifespanManager(app)

    async def __aenter__(self) -> None:
        await self._manager.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self._manager.__aexit__(*exc)


if __name__ == "__main__":
    asyncio.run(main())
