"""Rate limiting rules, per client: the exact sliding-window log and the sliding-window counter.

``RateLimiter`` is the port the application uses; the in-memory adapter wraps the two pure
limiters below, the Redis adapter runs the same two rules as Lua scripts inside Redis. One test
suite, parametrized over both storages and both algorithms, keeps them from drifting apart.

Sliding-window log (``sliding_log``, exact):

A request at time t is allowed iff fewer than ``requests_per_window`` requests of the same
client were allowed in (t - W, t]. Refused requests are not counted. Each client's log is a
sorted list of the times of its allowed requests, trimmed lazily.

Clients are kept in an ``OrderedDict`` ordered by their latest allowed request (moved to the
end on every allowed request). Since the clock is monotonic, the front of the dict is always
the client idle the longest, so each decision first drops the clients at the front whose newest
request has left the window: memory stays proportional to clients active in the last window,
and the sweep costs amortized O(1) per request instead of a scan.

A dict's table never shrinks when entries are deleted, so after a flood of distinct clients the
table would stay sized for the peak. Once eviction has brought the count to a quarter of the peak,
the dict is rebuilt at its current size: that costs the entries left, at most a third of those
just evicted, so it stays amortized O(1) and the flood's memory is really given back.
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from domain.ports import Clock


class RateLimitAlgorithm(enum.Enum):
    SLIDING_LOG = "sliding_log"
    """Exact: remembers every allowed request of the last window (memory ∝ limit)."""
    SLIDING_COUNTER = "sliding_counter"
    """Approximate, O(1) per client: two fixed buckets, the previous one weighted."""


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """How many requests one client may make per sliding window."""

    requests_per_window: int
    window_seconds: float
    algorithm: RateLimitAlgorithm = RateLimitAlgorithm.SLIDING_LOG

    def __post_init__(self) -> None:
        if self.requests_per_window < 1:
            raise ValueError("requests_per_window must be at least 1")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be positive")


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """One decision, with what rate-limit headers need."""

    allowed: bool
    limit: int
    remaining: int
    """Requests the client may still make right now."""
    reset_seconds: float
    """Seconds until the oldest counted request leaves the window and frees a unit of quota."""
    retry_after_seconds: float
    """When refused: seconds until a request would be allowed. 0 when allowed."""


class SlidingWindowLimiter:
    """Exact sliding-window-log limiter for many clients."""

    def __init__(self, policy: RateLimitPolicy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock
        self._logs: OrderedDict[str, list[float]] = OrderedDict()
        self._peak_clients = 0

    @property
    def policy(self) -> RateLimitPolicy:
        return self._policy

    @property
    def tracked_clients(self) -> int:
        """Clients with at least one request in a recent window (after the last sweep)."""
        return len(self._logs)

    def allow_request(self, client_id: str) -> RateLimitDecision:
        """Decide for one request of ``client_id`` now, counting it when allowed."""
        now = self._clock.now()
        window = self._policy.window_seconds
        limit = self._policy.requests_per_window
        horizon = now - window
        self._evict_idle(horizon)
        logs = self._logs

        log = logs.get(client_id)
        if log is None:
            logs[client_id] = [now]
            if len(logs) > self._peak_clients:
                self._peak_clients = len(logs)
            return RateLimitDecision(True, limit, limit - 1, window, 0.0)
        if log[0] <= horizon:
            del log[: bisect_right(log, horizon)]
        count = len(log)
        if count >= limit:
            wait = log[0] + window - now
            return RateLimitDecision(False, limit, 0, wait, wait)
        log.append(now)
        logs.move_to_end(client_id)
        return RateLimitDecision(True, limit, limit - count - 1, log[0] + window - now, 0.0)

    def _evict_idle(self, horizon: float) -> None:
        logs = self._logs
        evicted = False
        while logs:
            client_id = next(iter(logs))
            if logs[client_id][-1] > horizon:
                break
            del logs[client_id]
            evicted = True
        if evicted and self._peak_clients >= 1024 and len(logs) * 4 <= self._peak_clients:
            self._logs = OrderedDict(logs)
            self._peak_clients = len(logs)


class SlidingWindowCounter:
    """Cloudflare's sliding-window counter: ``previous * (W - elapsed) / W + current``.

    Time is cut into fixed buckets of length W; each client keeps the count of its current
    bucket and of the one before. A request is allowed iff that estimate is below the limit
    (and then counts in the current bucket). It assumes the previous bucket's requests were
    spread evenly, so it can be wrong by at most the previous bucket's count times the share
    of it still in the window: it over-admits when they came early in that bucket and
    under-admits when they came late. ``tests/unit/test_counter_accuracy.py`` measures it
    against the exact log on a recorded traffic pattern. State per client is three numbers.
    """

    def __init__(self, policy: RateLimitPolicy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock
        # client -> [bucket index, current count, previous count, time of last request]
        self._state: OrderedDict[str, list[float]] = OrderedDict()

    @property
    def policy(self) -> RateLimitPolicy:
        return self._policy

    @property
    def tracked_clients(self) -> int:
        return len(self._state)

    def allow_request(self, client_id: str) -> RateLimitDecision:
        now = self._clock.now()
        window = self._policy.window_seconds
        state = self._state
        while state:  # clients whose last request is two windows old have no count left
            oldest = next(iter(state))
            if state[oldest][3] > now - 2 * window:
                break
            del state[oldest]
        bucket = math.floor(now / window)
        entry = state.get(client_id)
        if entry is None or entry[0] < bucket - 1:
            current, previous = 0.0, 0.0
        elif entry[0] == bucket - 1:
            current, previous = 0.0, entry[1]
        else:
            current, previous = entry[1], entry[2]
        decision, counted = counter_decision(
            previous, current, now - bucket * window, window, self._policy.requests_per_window
        )
        state[client_id] = [bucket, current + counted, previous, now]
        state.move_to_end(client_id)
        return decision


def counter_decision(
    previous: float, current: float, elapsed: float, window: float, limit: int
) -> tuple[RateLimitDecision, int]:
    """The counter's decision in a bucket ``elapsed`` seconds old, and what it adds (0 or 1).

    The Redis adapter's Lua script computes the same formulas; the shared store tests hold them
    to the same answers.
    """
    estimate = previous * (window - elapsed) / window + current
    bucket_left = window - elapsed
    if estimate < limit:
        remaining = max(0, math.ceil(limit - estimate - 1))
        return RateLimitDecision(True, limit, remaining, bucket_left, 0.0), 1
    if current < limit:
        # wait until the previous bucket's weight has decayed enough
        wait = window * (1 - (limit - current) / previous) - elapsed
    else:
        # wait for the next bucket, where this one becomes the (decaying) previous
        wait = bucket_left + max(0.0, window * (1 - limit / current))
    wait = max(wait, 0.0)
    return RateLimitDecision(False, limit, 0, wait, wait), 0


class RateLimiter(Protocol):
    """The port the use case decides through; storages implement it."""

    @property
    def policy(self) -> RateLimitPolicy: ...

    @property
    def tracked_clients(self) -> int | None:
        """Clients remembered, when the storage can tell cheaply; None otherwise."""

    async def allow_request(self, client_id: str) -> RateLimitDecision:
        """Decide for one request now. Raises ``RateLimitStoreUnavailable`` on storage failure."""
        ...

    async def aclose(self) -> None: ...
