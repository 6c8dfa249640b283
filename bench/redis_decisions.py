"""Cost of a Redis rate-limit decision: decisions per second from one process, and p99 latency.

One process, uvloop, the real ``RedisRateLimiter`` against ``REDIS_URL`` (default
redis://127.0.0.1:6379/0) on loopback, 10,000 decisions spread over 1,000 clients, for each
algorithm, with 1, 8 and 32 decisions in flight (closed loop: throughput), then at a fixed offered
rate of 5,000 decisions/s for 3 s (open loop: each decision is started on schedule whether or not
earlier ones have finished, so a slow decision cannot slow the load down and hide itself; the
driver wakes on a ~1 ms timer, so decisions start in small bursts). CPU is this process's, per
decision, driver included.

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
DECISIONS = 10_000
OPEN_LOOP_RATE = 5_000
OPEN_LOOP_SECONDS = 3


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
    await _cleanup(prefix)
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(len(latencies) * 0.99)]
    return DECISIONS / elapsed, p50 * 1e3, p99 * 1e3


async def run_open_loop(
    algorithm: RateLimitAlgorithm, rate: int, seconds: float
) -> tuple[float, float, float]:
    prefix = f"bench:{uuid.uuid4().hex}:"
    policy = RateLimitPolicy(100, 60.0, algorithm)
    limiter = RedisRateLimiter.from_url(URL, policy, prefix, 1.0, get_logger("bench"))
    for n in range(200):
        await limiter.allow_request(f"warm-{n}")
    latencies: list[float] = []
    total = int(rate * seconds)

    async def one(n: int) -> None:
        started = time.perf_counter()
        await limiter.allow_request(f"client-{n % 1000}")
        latencies.append(time.perf_counter() - started)

    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    for n in range(total):
        scheduled = started + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    await limiter.aclose()
    await _cleanup(prefix)
    latencies.sort()
    return total / elapsed, latencies[len(latencies) // 2] * 1e3, latencies[int(total * 0.99)] * 1e3


async def _cleanup(prefix: str) -> None:
    cleanup = aioredis.Redis.from_url(URL)
    async for key in cleanup.scan_iter(match=f"{prefix}*", count=1000):
        await cleanup.delete(key)
    await cleanup.aclose()


async def main() -> None:
    print(f"Redis decisions against {URL}, one process")
    header = f"{'algorithm':16} {'load':>16} {'decisions/s':>12} {'p50 ms':>7} {'p99 ms':>7}"
    print(header + f" {'CPU µs':>7}")
    for algorithm in RateLimitAlgorithm:
        rows: list[tuple[str, tuple[float, float, float], float]] = []
        for in_flight in (1, 8, 32):
            cpu = time.process_time()
            figures = await run(algorithm, in_flight)
            rows.append((f"{in_flight} in flight", figures, time.process_time() - cpu))
        cpu = time.process_time()
        figures = await run_open_loop(algorithm, OPEN_LOOP_RATE, OPEN_LOOP_SECONDS)
        rows.append((f"{OPEN_LOOP_RATE:,}/s offered", figures, time.process_time() - cpu))
        for load, (rate, p50, p99), spent in rows:
            decisions = DECISIONS if "flight" in load else OPEN_LOOP_RATE * OPEN_LOOP_SECONDS
            print(
                f"{algorithm.value:16} {load:>16} {rate:12,.0f} {p50:7.3f} {p99:7.3f}"
                f" {spent / (decisions + 200) * 1e6:7.0f}"
            )


if __name__ == "__main__":
    uvloop.run(main())
