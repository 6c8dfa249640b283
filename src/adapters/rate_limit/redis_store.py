"""The Redis storage: one atomic round trip per decision, shared by every gateway replica.

Each algorithm is a Lua script, registered once and called by its SHA (redis-py's ``Script``
loads it again on ``NOSCRIPT``, e.g. after ``SCRIPT FLUSH`` or a failover). Scripts read Redis's
own clock (``TIME``), so replicas with skewed clocks agree. Keys are ``{prefix}{{client}}``: the
hash tag puts each client's key in one Redis Cluster slot. Members of the log are
``<microseconds>-<process token>-<sequence>``, unique even for two requests in one microsecond.

Decisions made while a round trip is on the wire are not sent one by one: they queue, and the
next round trip carries all of them as one pipeline (``EVALSHA`` per decision, no transaction;
each script is atomic on its own). At one request in flight a decision goes alone; under load,
many share a write and a read. This keeps the connections to Redis bounded by
``max_batches_in_flight`` however many requests arrive at once, and the system calls per
decision falling as load rises.

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
from redis.exceptions import NoScriptError, RedisError

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

MAX_BATCH = 256
"""Most decisions one round trip carries."""

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
        max_batches_in_flight: int = 4,
        owns_client: bool = True,
    ) -> None:
        """``owns_client``: ``aclose`` closes the client too (False: it is shared, e.g. by the
        limiters of every route, and its owner closes it)."""
        self._client = client
        self._owns_client = owns_client
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
        self._queue: list[_Pending] = []
        self._batches_in_flight = 0
        self._max_batches = max_batches_in_flight
        self._senders: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        policy: RateLimitPolicy,
        key_prefix: str,
        timeout_seconds: float,
        logger: Any,
        max_batches_in_flight: int = 4,
    ) -> RedisRateLimiter:
        # One connection per batch in flight, plus one spare for a sender still giving its
        # connection back; decisions wait in the queue, never for a connection.
        client = client_for(url, timeout_seconds, max_batches_in_flight + 1)
        return cls(client, policy, key_prefix, timeout_seconds, logger, max_batches_in_flight)

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
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((self.key(client_id), args, reply))
        if self._batches_in_flight < self._max_batches:
            self._start_sender()
        try:
            async with asyncio.timeout(self._timeout):
                allowed, remaining, reset_us, wait_us = await reply
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

    def _start_sender(self) -> None:
        self._batches_in_flight += 1
        task = asyncio.create_task(self._send_batches())
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)

    async def _send_batches(self) -> None:
        """Send what has queued, in one round trip, until the queue is empty."""
        try:
            while self._queue:
                # Capped, so a burst is spread over the senders and no round trip grows long
                # enough to time out every decision in it.
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                batch = [pending for pending in batch if not pending[2].done()]
                if batch:
                    await self._send(batch)
        finally:
            self._batches_in_flight -= 1

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            # Bounded like a decision, so a hung Redis frees this sender (redis-py drops the
            # connection it cancels) instead of holding it for ever.
            async with asyncio.timeout(self._timeout):
                replies = await self._pipeline(batch)
                missing = [n for n, r in enumerate(replies) if isinstance(r, NoScriptError)]
                if missing:  # SCRIPT FLUSH or a failover: load it again, resend those.
                    await self._client.script_load(self._script.script)
                    again = await self._pipeline([batch[n] for n in missing])
                    for n, reply in zip(missing, again, strict=True):
                        replies[n] = reply
        except BaseException as error:  # every waiter must hear of it
            failure = error if isinstance(error, Exception) else ConnectionError("cancelled")
            for _, _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(failure)
            if not isinstance(error, Exception):
                raise
            return
        for (_, _, waiter), reply in zip(batch, replies, strict=True):
            if waiter.done():
                continue
            if isinstance(reply, Exception):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)

    async def _pipeline(self, batch: list[_Pending]) -> list[Any]:
        sha = self._script.sha
        async with self._client.pipeline(transaction=False) as pipe:
            for key, args, _ in batch:
                pipe.evalsha(sha, 1, key, *args)
            return await pipe.execute(raise_on_error=False)

    async def aclose(self) -> None:
        for task in list(self._senders):
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        if self._owns_client:
            await self._client.aclose()


_Pending = tuple[str, list[Any], "asyncio.Future[Any]"]


def client_for(url: str, timeout_seconds: float, max_connections: int) -> redis.Redis:
    """A Redis client for limiters: connecting is bounded by the decision's timeout."""
    return redis.Redis.from_url(
        url,
        max_connections=max_connections,
        socket_connect_timeout=max(timeout_seconds, 0.1),
        health_check_interval=30,
    )
