"""``Retry-After`` values (RFC 9110: delay-seconds or an HTTP-date) as seconds from now.

Kept with the clocks because an HTTP-date needs the wall clock, which the domain never
reads; the domain sees only ``UpstreamResponse.retry_after_seconds``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_SECONDS = 86_400.0


def wall_clock_now() -> datetime:
    return datetime.now(UTC)


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    """Seconds to wait, at least 0 and at most a day; None when the value is not valid."""
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit(), not to float()
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or wall_clock_now())).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
