"""CPU per request of the candidate upstream clients, against the real flaky backend.

Starts the backend (failures and slowness off) in its own process, then sends the same number
of requests at 32 in flight through each client in this process, and prints this process's CPU
time per request. It is how the choice of ``AiohttpUpstream``, then of ``HttptoolsUpstream``,
was made (the backend's logs are off, so its CPU is not what limits the rate); run it with
``.venv/bin/python bench/upstream_clients.py`` (httpx-aiohttp must be installed for that row).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import uvloop

from adapters.backend_client.aiohttp_upstream import AiohttpUpstream
from adapters.backend_client.httptools_upstream import HttptoolsUpstream
from domain.ports import UpstreamRequest

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "8000"))
CONCURRENCY = 32
PORT = 18401
URL = f"http://127.0.0.1:{PORT}"


async def drive(send: Callable[[], Awaitable[int]]) -> tuple[float, float]:
    for _ in range(200):  # warm the pool
        await send()
    queue = iter(range(REQUESTS))

    async def worker() -> None:
        for _ in queue:
            assert await send() == 200

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.process_time() - cpu, time.perf_counter() - wall


async def with_adapter(kind: type[AiohttpUpstream | HttptoolsUpstream]) -> tuple[float, float]:
    upstream = kind(URL, pool_size=CONCURRENCY)
    await upstream.start()
    request = UpstreamRequest("GET", "/flaky-data", "", (("x-request-id", "bench"),))

    async def send() -> int:
        return (await upstream.send(request, 5.0)).status

    try:
        return await drive(send)
    finally:
        await upstream.aclose()


def httpx_client(transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    return httpx.AsyncClient(
        base_url=URL, transport=transport, limits=limits, trust_env=False, timeout=5.0
    )


async def with_httpx(transport: httpx.AsyncBaseTransport | None) -> tuple[float, float]:
    async with httpx_client(transport) as client:

        async def send() -> int:
            answer = await client.get("/flaky-data", headers={"x-request-id": "bench"})
            return answer.status_code

        return await drive(send)


async def main() -> None:
    from httpx_aiohttp import AiohttpTransport

    env = {**os.environ, "FLAKY_FAILURE_RATE": "0", "FLAKY_SLOW_RATE": "0", "LOG_LEVEL": "WARNING"}
    backend = subprocess.Popen(
        [str(Path(sys.executable).parent / "flaky-backend"), "--port", str(PORT)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                httpx.get(f"{URL}/health")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        candidates = {
            "aiohttp (AiohttpUpstream)": lambda: with_adapter(AiohttpUpstream),
            "httptools (HttptoolsUpstream)": lambda: with_adapter(HttptoolsUpstream),
            "aiohttp again": lambda: with_adapter(AiohttpUpstream),
            "httptools again": lambda: with_adapter(HttptoolsUpstream),
            "httpx API over httpx-aiohttp": lambda: with_httpx(AiohttpTransport()),
            "httpx default transport": lambda: with_httpx(None),
        }
        print(f"{REQUESTS} requests, {CONCURRENCY} in flight, client process only")
        print(f"{'client':32} {'CPU µs/request':>15} {'requests/s':>11}")
        for name, run in candidates.items():
            cpu, wall = await run()
            print(f"{name:32} {cpu / REQUESTS * 1e6:15.0f} {REQUESTS / wall:11.0f}")
    finally:
        backend.terminate()
        backend.wait()


if __name__ == "__main__":
    uvloop.run(main())
