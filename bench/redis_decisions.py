"""Cost of a Redis rate-limit decision: decisions per second from one process, and p99 latency.

One process, uvloop, the real ``RedisRateLimiter`` against ``REDIS_URL`` (default
redis://127.0.0.1:6379/0) on loopback, 20,000 decisions spread over 1,000 clients, for each
algorithm, with 1 and with 32 decisions in flight. Latency is measured per decision.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/redis_decisions.py
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import redis.asyncio as aioredis
import uvloop

from adapters.observability import get_logger
from adapters.rate_limit.redis_store import RedisRateLimiter
from domain.rate_limit import RateLimitAlgorithm, RateLimitPolicy

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DECISIONS = 20_000


async def run(algorithm: RateLimitAlgorithm, in_flight: int) -> tuple[float, float, float]:
    prefix = f"bench:{uuid.uuid4().hex}:"
    policy = RateLimitPolicy(100, 60.0, algorithm)
    limiter = RedisRateLimiter.from_url(URL, policy, prefix, 1.0, get_logger("bench"))
    latencies: list[float] = []
    work = iter(range(DECISIONS))

    async def worker() -> None:
        for n in work:
            started = time.perf_counter()
            await limiter.allow_request(f"client-{n % 1000}")
            latencies.append(time.perf_counter() - started)

    for n in range(200):
        await limiter.allow_request(f"warm-{n}")
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    await limiter.aclose()
    cleanup = aioredis.Redis.from_url(URL)
    async for key in cleanup.scan_iter(match=f"{prefix}*", count=1000):
        await cleanup.delete(key)
    await cleanup.aclose()
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(len(latencies) * 0.99)]
    return DECISIONS / elapsed, p50 * 1e3, p99 * 1e3


async def main() -> None:
    print(f"Redis decisions against {URL}, {DECISIONS} per row, one process")
    print(f"{'algorithm':16} {'in flight':>9} {'decisions/s':>12} {'p50 ms':>7} {'p99 ms':>7}")
    for algorithm in RateLimitAlgorithm:
        for in_flight in (1, 8, 32):
            rate, p50, p99 = await run(algorithm, in_flight)
            print(f"{algorithm.value:16} {in_flight:9} {rate:12,.0f} {p50:7.3f} {p99:7.3f}")


if __name__ == "__main__":
    uvloop.run(main())
