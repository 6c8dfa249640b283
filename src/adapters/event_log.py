"""The gateway's recent events, for people: breaker transitions now, config reloads later.

A bounded log of the last ``EVENT_LOG_SIZE`` events, each a small JSON-ready dict with its
wall-clock time (ISO 8601, UTC) and ``kind``. Whoever notices something worth showing appends
to it (``BreakerTransitionReporter`` does for transitions; a reload or an admin change can do
the same); the dashboard shows the list as it is. Appending is O(1) and forgets the oldest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from adapters.clock.http_dates import wall_clock_now

EVENT_LOG_SIZE = 50


class EventLog:
    """The last ``size`` events, oldest first."""

    def __init__(
        self, size: int = EVENT_LOG_SIZE, wall_clock: Callable[[], datetime] = wall_clock_now
    ) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=size)
        self._wall_clock = wall_clock

    def append(self, kind: str, **details: Any) -> None:
        """Record an event of ``kind`` now; ``details`` must be JSON values."""
        time = self._wall_clock().astimezone(UTC).isoformat(timespec="milliseconds")
        self._events.append({"time": time, "kind": kind, **details})

    def recent(self) -> list[dict[str, Any]]:
        """The kept events, oldest first (copies of the list, sharing the dicts)."""
        return list(self._events)
