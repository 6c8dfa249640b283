"""What operators did through the admin API: the last changes, and refused attempts.

``AdminAudit`` keeps the most recent breaker changes in a bounded list (oldest dropped first),
so ``/metrics`` and a dashboard can show who forced what and when, without growing forever. It
also counts requests refused for a missing or wrong token. ``AdminAuditCollector`` exposes both
as Prometheus counters.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from adapters.clock.http_dates import wall_clock_now
from adapters.event_log import EventLog

DEFAULT_EVENTS_KEPT = 50


@dataclass(frozen=True, slots=True)
class AdminEvent:
    """One change an operator made to a breaker."""

    at: str
    """UTC wall-clock time, ISO 8601."""
    breaker: str
    previous: str
    current: str
    by: str
    """The peer the request came from."""


class AdminAudit:
    """The last ``capacity`` admin changes, and a count of refused admin requests."""

    def __init__(
        self,
        capacity: int = DEFAULT_EVENTS_KEPT,
        wall_clock: Callable[[], datetime] = wall_clock_now,
        event_log: EventLog | None = None,
    ) -> None:
        self._events: deque[AdminEvent] = deque(maxlen=capacity)
        self._event_log = event_log
        """The dashboard's event list, which shows each change too."""
        self._wall_clock = wall_clock
        self.unauthorized = 0
        self.changes: Counter[tuple[str, str]] = Counter()
        """Changes by (breaker, state set), since start."""

    @property
    def events(self) -> list[AdminEvent]:
        """The kept events, oldest first."""
        return list(self._events)

    def changed(self, breaker: str, previous: str, current: str, by: str) -> AdminEvent:
        event = AdminEvent(self._wall_clock().isoformat(), breaker, previous, current, by)
        self._events.append(event)
        self.changes[breaker, current] += 1
        if self._event_log is not None:
            self._event_log.append(
                "breaker_admin_change", upstream=breaker, previous=previous, current=current, by=by
            )
        return event

    def refused(self) -> None:
        self.unauthorized += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "unauthorized_requests": self.unauthorized,
            "events": [asdict(event) for event in self._events],
        }


class AdminAuditCollector:
    """``gateway_admin_unauthorized_total`` and ``gateway_breaker_admin_changes_total``."""

    def __init__(self, audit: AdminAudit) -> None:
        self._audit = audit

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "gateway_admin_unauthorized",
            "Admin API requests refused for a missing or wrong token.",
        )
        refused.add_metric([], self._audit.unauthorized)
        changes = CounterMetricFamily(
            "gateway_breaker_admin_changes",
            "Breaker states set by an operator through the admin API.",
            labels=["breaker", "state"],
        )
        for (breaker, state), count in sorted(self._audit.changes.items()):
            changes.add_metric([breaker, state], count)
        yield refused
        yield changes
