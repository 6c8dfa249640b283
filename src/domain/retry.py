"""The retry policy: which answers are worth another try, and how long to wait before it.

Pure arithmetic; the waiting itself is done by whoever runs the loop, through the ``Sleeper``
port, so tests read the schedule without sleeping. Randomness for jitter comes from an injected
source (``random.Random`` satisfies ``RandomSource``), so tests are exact.

Jitter is applied to the already-capped delay: a capped delay stays spread instead of every
client collapsing onto the cap (the "Exponential Backoff and Jitter" strategies of the AWS
architecture blog, with the cap applied first).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class RandomSource(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


class Jitter(enum.Enum):
    NONE = "none"
    """The exact schedule."""
    FULL = "full"
    """Uniform in [0, d]."""
    EQUAL = "equal"
    """d/2 plus uniform in [0, d/2]."""
    DECORRELATED = "decorrelated"
    """Uniform in [initial, min(cap, 3 * previous wait)]: grows, but not in lockstep."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: retry ``n`` (1-based) waits ``initial * multiplier**(n-1)``, capped."""

    max_retries: int = 3
    initial_backoff_seconds: float = 0.5
    backoff_multiplier: float = 2.0
    max_backoff_seconds: float = 10.0
    retry_on_status: frozenset[int] = field(default_factory=lambda: frozenset({503}))
    jitter: Jitter = Jitter.NONE

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
        """Seconds to wait before retry ``retry_number`` (1 for the first retry), no jitter."""
        if retry_number < 1:
            raise ValueError("retry_number starts at 1")
        delay = self.initial_backoff_seconds * self.backoff_multiplier ** (retry_number - 1)
        return min(delay, self.max_backoff_seconds)

    def jittered_delay(self, retry_number: int, previous: float, rng: RandomSource) -> float:
        """The wait before retry ``retry_number`` with this policy's jitter.

        ``previous`` is the wait before the previous retry (0 before the first), which only
        decorrelated jitter uses.
        """
        capped = self.next_delay(retry_number)
        match self.jitter:
            case Jitter.NONE:
                return capped
            case Jitter.FULL:
                return rng.uniform(0.0, capped)
            case Jitter.EQUAL:
                return capped / 2 + rng.uniform(0.0, capped / 2)
            case Jitter.DECORRELATED:
                base = min(self.initial_backoff_seconds, self.max_backoff_seconds)
                upper = min(self.max_backoff_seconds, max(base, previous * 3))
                return rng.uniform(base, upper)

    def retries_status(self, status: int) -> bool:
        """Whether an upstream answer with this status is a transient failure to retry."""
        return status in self.retry_on_status

    def schedule(self) -> tuple[float, ...]:
        """Every wait of a request that uses all its retries, in order, without jitter."""
        return tuple(self.next_delay(n) for n in range(1, self.max_retries + 1))
