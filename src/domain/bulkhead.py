"""The bulkhead: at most ``limit`` calls to one upstream in flight at once.

As Envoy's per-cluster circuit-breaking thresholds bound requests in flight, this keeps a slow
upstream from tying up every connection and task of the gateway: past the limit a call is refused
at once instead of queueing. Synchronous, so atomic on one event loop.
"""

from __future__ import annotations


class Bulkhead:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._in_flight = 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def try_acquire(self) -> bool:
        if self._in_flight >= self._limit:
            return False
        self._in_flight += 1
        return True

    def release(self) -> None:
        if self._in_flight <= 0:
            raise RuntimeError("released more than acquired")
        self._in_flight -= 1
