"""The retry policy: which answers are worth another try, and how long to wait before it.

Pure arithmetic; the waiting itself is done by whoever runs the loop, through the ``Sleeper``
port, so tests read the schedule without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: retry ``n`` (1-based) waits ``initial * multiplier**(n-1)``, capped."""

    max_retries: int = 3
    initial_backoff_seconds: float = 0.5
    backoff_multiplier: float = 2.0
    max_backoff_seconds: float = 10.0
    retry_on_status: frozenset[int] = field(default_factory=lambda: frozenset({503}))

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if self.initial_backoff_seconds < 0:
            raise ValueError("initial_backoff_seconds must not be negative")
        if self.backoff_multiplier < 1:
            raise ValueError("backoff_multiplier must be at least 1")
        if self.max_backoff_seconds < 0:
            raise ValueError("max_backoff_seconds must not be negative")

    def next_delay(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        if retry_number < 1:
            raise ValueError("retry_number starts at 1")
        delay = self.initial_backoff_seconds * self.backoff_multiplier ** (retry_number - 1)
        return min(delay, self.max_backoff_seconds)

    def retries_status(self, status: int) -> bool:
        """Whether an upstream answer with this status is a transient failure to retry."""
        return status in self.retry_on_status

    def schedule(self) -> tuple[float, ...]:
        """Every wait of a request that uses all its retries, in order."""
        return tuple(self.next_delay(n) for n in range(1, self.max_retries + 1))
