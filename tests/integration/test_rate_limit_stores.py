"""One suite for every storage and algorithm, so memory and Redis cannot drift apart.

Real time here (Redis keeps its own clock), with windows long enough for scheduling noise; the
exact edges at t - W are pinned by the unit tests and the property tests with a fake clock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from adapters.clock.system import SystemClock
from adapters.observability import get_logger
from adapters.rate_limit.memory import InMemoryRateLimiter
from adapters.rate_limit.redis_store import RedisRateLimiter
from domain.rate_limit import RateLimitAlgorithm, RateLimiter, RateLimitPolicy

pytestmark = pytest.mark.redis

MakeLimiter = Callable[[int, float], RateLimiter]


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=list(RateLimitAlgorithm), ids=lambda a: a.value)
def algorithm(request: pytest.FixtureRequest) -> RateLimitAlgorithm:
    return RateLimitAlgorithm(request.param)


@pytest.fixture
async def make_limiter(
    storage: str, algorithm: RateLimitAlgorithm, request: pytest.FixtureRequest
) -> AsyncIterator[MakeLimiter]:
    made: list[RateLimiter] = []
    url = request.getfixturevalue("redis_url") if storage == "redis" else ""

    def make(limit: int, window: float) -> RateLimiter:
        policy = RateLimitPolicy(limit, window, algorithm)
        limiter: RateLimiter
        if storage == "memory":
            limiter = InMemoryRateLimiter(policy, SystemClock())
        else:
            prefix = f"test:{uuid.uuid4().hex}:"
            limiter = RedisRateLimiter.from_url(url, policy, prefix, 1.0, get_logger("test"))
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


async def test_allows_exactly_the_limit_then_blocks(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(3, 3600)
    decisions = [await limiter.allow_request("a") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert 0 < decisions[3].retry_after_seconds <= 7200


async def test_clients_are_counted_apart(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(1, 3600)
    assert (await limiter.allow_request("a")).allowed
    assert (await limiter.allow_request("b")).allowed
    assert not (await limiter.allow_request("a")).allowed


async def test_a_concurrent_burst_of_four_times_the_limit_allows_exactly_the_limit(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(10, 3600)
    decisions = await asyncio.gather(*(limiter.allow_request("burst") for _ in range(40)))
    assert sum(d.allowed for d in decisions) == 10


async def test_blocked_client_is_allowed_again_after_retry_after(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(2, 1.0)
    await limiter.allow_request("a")
    await limiter.allow_request("a")
    blocked = await limiter.allow_request("a")
    assert not blocked.allowed
    assert 0 < blocked.retry_after_seconds <= 2.0
    await asyncio.sleep(blocked.retry_after_seconds + 0.05)
    assert (await limiter.allow_request("a")).allowed


async def test_everything_is_forgotten_after_two_windows(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(2, 0.5)
    for _ in range(4):
        await limiter.allow_request("a")
    await asyncio.sleep(1.05)
    decision = await limiter.allow_request("a")
    assert decision.allowed
    assert decision.remaining == 1


@pytest.mark.parametrize("algorithm", [RateLimitAlgorithm.SLIDING_LOG], ids=["sliding_log"])
async def test_the_log_slides_instead_of_resetting(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(2, 1.0)
    started = time.monotonic()
    await limiter.allow_request("a")  # t = 0
    await asyncio.sleep(0.6)
    await limiter.allow_request("a")  # t = 0.6
    assert not (await limiter.allow_request("a")).allowed
    await asyncio.sleep(1.15 - (time.monotonic() - started))  # t = 1.15: the first has left
    assert (await limiter.allow_request("a")).allowed
    assert not (await limiter.allow_request("a")).allowed  # the one at 0.6 is still in
