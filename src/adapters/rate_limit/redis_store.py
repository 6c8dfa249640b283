"""The Redis storage: one atomic round trip per decision, shared by every gateway replica.

Each algorithm is a Lua script, registered once and called by its SHA (redis-py's ``Script``
loads it again on ``NOSCRIPT``, e.g. after ``SCRIPT FLUSH`` or a failover). Scripts read Redis's
own clock (``TIME``), so replicas with skewed clocks agree. Keys are ``{prefix}{{client}}``: the
hash tag puts each client's key in one Redis Cluster slot. Members of the log are
``<microseconds>-<process token>-<sequence>``, unique even for two requests in one microsecond.

A Redis error, or a decision slower than ``timeout_seconds``, raises
``RateLimitStoreUnavailable``; the use case then fails open or closed as configured. Failures
and the recovery after them are logged once per change, not once per request.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from domain.errors import RateLimitStoreUnavailable
from domain.rate_limit import RateLimitAlgorithm, RateLimitDecision, RateLimitPolicy

# KEYS[1] the client's sorted set; ARGV limit, window in µs, unique member suffix.
# Returns {allowed, remaining, reset µs, retry-after µs}. Same rule as SlidingWindowLimiter:
# allowed iff fewer than `limit` members in (now - W, now].
SLIDING_LOG = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {1, limit - count - 1, tonumber(oldest[2]) + window - now, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
return {0, 0, wait, wait}
"""

# KEYS[1] the client's hash {b = bucket index, c = current count, p = previous count}; ARGV
# limit, window in µs. Same formulas as domain.rate_limit.counter_decision.
SLIDING_COUNTER = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local bucket = math.floor(now / window)
local stored = redis.call('HMGET', KEYS[1], 'b', 'c', 'p')
local current, previous = 0, 0
local stored_bucket = tonumber(stored[1])
if stored_bucket == bucket then
  current, previous = tonumber(stored[2]), tonumber(stored[3])
elseif stored_bucket == bucket - 1 then
  previous = tonumber(stored[2])
end
local elapsed = now - bucket * window
local estimate = previous * (window - elapsed) / window + current
local left = window - elapsed
if estimate < limit then
  redis.call('HSET', KEYS[1], 'b', bucket, 'c', current + 1, 'p', previous)
  redis.call('PEXPIRE', KEYS[1], math.ceil(2 * window / 1000))
  return {1, math.max(0, math.ceil(limit - estimate - 1)), left, 0}
end
local wait
if current < limit then
  wait = window * (1 - (limit - current) / previous) - elapsed
else
  wait = left + math.max(0, window * (1 - limit / current))
end
wait = math.max(wait, 0)
return {0, 0, math.floor(wait), math.floor(wait)}
"""

_SCRIPTS = {
    RateLimitAlgorithm.SLIDING_LOG: SLIDING_LOG,
    RateLimitAlgorithm.SLIDING_COUNTER: SLIDING_COUNTER,
}


class RedisRateLimiter:
    """Implements ``RateLimiter`` on a Redis server (``redis://`` or ``rediss://``)."""

    def __init__(
        self,
        client: redis.Redis,
        policy: RateLimitPolicy,
        key_prefix: str,
        timeout_seconds: float,
        logger: Any,
    ) -> None:
        self._client = client
        self._policy = policy
        self._prefix = key_prefix
        self._timeout = timeout_seconds
        self._log = logger
        self._script = client.register_script(_SCRIPTS[policy.algorithm])
        self._limit = policy.requests_per_window
        self._window_us = round(policy.window_seconds * 1_000_000)
        self._token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._sequence = itertools.count()
        self._failing = False

    @classmethod
    def from_url(
        cls,
        url: str,
        policy: RateLimitPolicy,
        key_prefix: str,
        timeout_seconds: float,
        logger: Any,
        pool_size: int = 100,
    ) -> RedisRateLimiter:
        client = redis.Redis.from_url(
            url,
            max_connections=pool_size,
            socket_connect_timeout=max(timeout_seconds, 0.1),
            health_check_interval=30,
        )
        return cls(client, policy, key_prefix, timeout_seconds, logger)

    @property
    def policy(self) -> RateLimitPolicy:
        return self._policy

    @property
    def tracked_clients(self) -> int | None:
        return None

    def key(self, client_id: str) -> str:
        return f"{self._prefix}{{{client_id}}}"

    async def allow_request(self, client_id: str) -> RateLimitDecision:
        args: list[Any] = [self._limit, self._window_us]
        if self._policy.algorithm is RateLimitAlgorithm.SLIDING_LOG:
            args.append(f"{self._token}-{next(self._sequence)}")
        try:
            async with asyncio.timeout(self._timeout):
                allowed, remaining, reset_us, wait_us = await self._script(
                    keys=[self.key(client_id)], args=args
                )
        except (TimeoutError, RedisError, OSError) as error:
            if not self._failing:
                self._failing = True
                self._log.error(
                    "rate_limit_store_failing", error=f"{type(error).__name__}: {error}"
                )
            raise RateLimitStoreUnavailable(str(error) or type(error).__name__) from error
        if self._failing:
            self._failing = False
            self._log.warning("rate_limit_store_recovered")
        return RateLimitDecision(
            bool(allowed), self._limit, int(remaining), reset_us / 1e6, wait_us / 1e6
        )

    async def aclose(self) -> None:
        await self._client.aclose()
