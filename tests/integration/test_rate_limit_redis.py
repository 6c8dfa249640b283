"""The Redis storage's own promises: scripts, keys, outages, and replicas sharing one limit."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from adapters.backend_client.fake import FakeUpstream
from adapters.observability import get_logger
from adapters.rate_limit.redis_store import RedisRateLimiter
from domain.errors import RateLimitStoreUnavailable
from domain.rate_limit import RateLimitAlgorithm, RateLimitPolicy
from tests.integration.conftest import BIN, free_port, gateway_in_process, service, wait_healthy

pytestmark = pytest.mark.redis


def limiter_at(url: str, limit: int = 5, timeout: float = 0.05) -> RedisRateLimiter:
    policy = RateLimitPolicy(limit, 60.0, RateLimitAlgorithm.SLIDING_LOG)
    return RedisRateLimiter.from_url(
        url, policy, f"t:{uuid.uuid4().hex}:", timeout, get_logger("t")
    )


@asynccontextmanager
async def opened(limiter: RedisRateLimiter) -> AsyncIterator[RedisRateLimiter]:
    try:
        yield limiter
    finally:
        await limiter.aclose()


async def test_noscript_after_script_flush_is_recovered(redis_url: str) -> None:
    async with opened(limiter_at(redis_url)) as limiter:
        assert (await limiter.allow_request("a")).remaining == 4
        client = aioredis.Redis.from_url(redis_url)
        await client.script_flush()
        await client.aclose()
        assert (await limiter.allow_request("a")).remaining == 3


async def test_noscript_in_a_concurrent_batch_is_recovered_for_every_decision(
    redis_url: str,
) -> None:
    async with opened(limiter_at(redis_url, limit=30, timeout=2.0)) as limiter:
        await limiter.allow_request("warm")
        client = aioredis.Redis.from_url(redis_url)
        await client.script_flush()
        await client.aclose()
        decisions = await asyncio.gather(*(limiter.allow_request("b") for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 30
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(30))


async def test_a_burst_far_above_the_connection_bound_is_decided_not_refused(
    redis_url: str,
) -> None:
    """1,000 decisions at once share two connections' round trips; none fails for want of one."""
    policy = RateLimitPolicy(100, 60.0, RateLimitAlgorithm.SLIDING_LOG)
    limiter = RedisRateLimiter.from_url(
        redis_url, policy, f"t:{uuid.uuid4().hex}:", 2.0, get_logger("t"), max_batches_in_flight=2
    )
    async with opened(limiter):
        decisions = await asyncio.gather(
            *(limiter.allow_request(f"c{n % 5}") for n in range(1_000))
        )
    assert sum(d.allowed for d in decisions) == 500  # 100 for each of the 5 clients


async def test_a_caller_that_gives_up_does_not_disturb_the_others(redis_url: str) -> None:
    async with opened(limiter_at(redis_url, limit=100, timeout=2.0)) as limiter:
        calls = [asyncio.create_task(limiter.allow_request("d")) for _ in range(40)]
        await asyncio.sleep(0)  # every call is queued and waiting for its reply
        for call in calls[::2]:
            call.cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        after = await limiter.allow_request("d")
    survivors = [r for r in results if not isinstance(r, BaseException)]
    assert len(survivors) == 20
    assert all(d.allowed for d in survivors)
    assert after.allowed
    # The abandoned half may or may not have reached Redis before they gave up.
    assert 100 - 40 - 1 <= after.remaining <= 100 - 20 - 1


async def test_members_are_unique_and_keys_expire_with_the_window(redis_url: str) -> None:
    async with opened(limiter_at(redis_url, limit=100, timeout=2.0)) as limiter:
        await asyncio.gather(*(limiter.allow_request("same") for _ in range(60)))
        client = aioredis.Redis.from_url(redis_url)
        key = limiter.key("same")
        count, ttl = await client.zcard(key), await client.pttl(key)
        await client.aclose()
    assert count == 60
    assert 0 < ttl <= 60_000
    assert key.endswith("{same}")


@contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a Redis that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize("fault", ["down", "hanging"])
async def test_storage_faults_are_reported_within_the_timeout(fault: str) -> None:
    with silent_server() as hanging_url:
        url = hanging_url if fault == "hanging" else f"redis://127.0.0.1:{free_port()}/0"
        async with opened(limiter_at(url, timeout=0.05)) as limiter:
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(RateLimitStoreUnavailable):
                    await limiter.allow_request("a")
                assert time.monotonic() - started < 0.05 + 0.1


@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 503)])
async def test_gateway_fails_open_or_closed_when_redis_is_down(
    fail_open: bool, status: int
) -> None:
    async with gateway_in_process(
        FakeUpstream(),
        rate_limit_storage_url=f"redis://127.0.0.1:{free_port()}/0",
        rate_limit_fail_open=fail_open,
    ) as gw:
        started = time.monotonic()
        answers = [await gw.client.get("/api/v1/data") for _ in range(3)]
        elapsed = time.monotonic() - started
        metrics = (await gw.client.get("/metrics")).json()
    assert [a.status_code for a in answers] == [status] * 3
    assert elapsed < 3 * (0.05 + 0.1)
    assert metrics["rate_limit_store_errors"] == 3
    if not fail_open:
        assert answers[0].json()["type"].endswith("rate-limit-unavailable")


async def test_recovers_by_itself_when_redis_comes_back(redis_url: str) -> None:
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    front = free_port()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async with opened(limiter_at(f"redis://127.0.0.1:{front}/0", timeout=0.5)) as limiter:
        with pytest.raises(RateLimitStoreUnavailable):
            await limiter.allow_request("a")  # nothing listens yet: Redis is "down"
        server = await asyncio.start_server(forward, "127.0.0.1", front)
        try:
            decision = await limiter.allow_request("a")
        finally:
            server.close()
    assert decision.allowed


def test_two_gateway_processes_share_exactly_one_limit(redis_url: str, tmp_path: Path) -> None:
    backend_env = {"FLAKY_FAILURE_RATE": "0", "FLAKY_SLOW_RATE": "0"}
    with service("flaky-backend", backend_env, tmp_path) as backend:
        env = {
            "BACKEND_URL": backend.url,
            "RATE_LIMIT_STORAGE_URL": redis_url,
            "RATE_LIMIT_KEY_PREFIX": f"replicas:{uuid.uuid4().hex}:",
            "RATE_LIMIT_REQUESTS_PER_WINDOW": "5",
            "RATE_LIMIT_STORAGE_TIMEOUT_SECONDS": "1",
            "RATE_LIMIT_FAIL_OPEN": "false",
            "TRUSTED_PROXIES": "127.0.0.1/32",
        }
        with (
            service("resilient-gateway", env, tmp_path) as a,
            service("resilient-gateway", env, tmp_path) as b,
        ):
            urls = (a.url, b.url)
            sequential = [
                httpx.get(
                    f"{urls[n % 2]}/api/v1/data", headers={"X-Forwarded-For": "198.51.100.1"}
                ).status_code
                for n in range(10)
            ]
            burst = asyncio.run(burst_through(urls, "198.51.100.2", 20))
    assert sequential == [200] * 5 + [429] * 5
    assert burst.count(200) == 5
    assert burst.count(429) == 15


async def burst_through(urls: tuple[str, str], client_address: str, requests: int) -> list[int]:
    """``requests`` concurrent requests of one client, alternating between two replicas."""
    headers = {"X-Forwarded-For": client_address}
    async with httpx.AsyncClient(timeout=10) as client:
        answers = await asyncio.gather(
            *(client.get(f"{urls[n % 2]}/api/v1/data", headers=headers) for n in range(requests))
        )
    return [answer.status_code for answer in answers]


def test_several_workers_share_the_limit_through_redis(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BACKEND_URL": f"http://127.0.0.1:{free_port()}",
        "RATE_LIMIT_STORAGE_URL": redis_url,
        "RATE_LIMIT_KEY_PREFIX": f"workers:{uuid.uuid4().hex}:",
        "RATE_LIMIT_REQUESTS_PER_WINDOW": "3",
        "RATE_LIMIT_STORAGE_TIMEOUT_SECONDS": "1",
        "MAX_RETRIES": "0",
    }
    command = [str(BIN / "resilient-gateway"), "--port", str(port), "--workers", "2"]
    with (tmp_path / "workers.log").open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)  # type: ignore[arg-type]
        statuses = [
            httpx.get(
                f"http://127.0.0.1:{port}/api/v1/data", headers={"Connection": "close"}
            ).status_code
            for _ in range(8)
        ]
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert statuses.count(429) == 5  # 3 allowed (503: no backend), then refused, across workers
