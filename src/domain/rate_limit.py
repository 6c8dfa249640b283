"""The sliding-window-log rate limiter: exact, per client, with amortized eviction.

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

from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass

from domain.ports import Clock


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """How many requests one client may make per sliding window."""

    requests_per_window: int
    window_seconds: float

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
