"""The circuit breaker: CLOSED -> OPEN -> HALF_OPEN -> CLOSED, driven by an injected clock.

A caller asks ``allow_request()`` before each upstream call and gets a ``BreakerPermit``; it then
hands the permit back with the call's outcome to ``record()``, also when the call was cancelled,
so a HALF_OPEN trial can never leave its slot taken. Every method is synchronous, so on one
event loop each decision is atomic: twenty concurrent callers in HALF_OPEN see exactly
``half_open_max_calls`` admissions.

Permits carry the breaker's generation (bumped on every transition): an outcome reported for a
call admitted before the last transition is stale and changes nothing, so a slow success from an
earlier CLOSED period cannot close a breaker that has since opened.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from domain.ports import Clock


class BreakerState(enum.Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CallOutcome(enum.Enum):
    """How an admitted call ended, as far as the breaker cares."""

    SUCCESS = "success"
    FAILURE = "failure"
    ABANDONED = "abandoned"
    """Cancelled before it finished (the client hung up): frees the permit, counts as nothing,
    since a client leaving says nothing about the upstream's health."""


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """How eagerly the breaker opens and how carefully it closes again."""

    failure_threshold: int = 5
    recovery_timeout_seconds: float = 30.0
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.recovery_timeout_seconds <= 0:
            raise ValueError("recovery_timeout_seconds must be positive")
        if self.half_open_max_calls < 1:
            raise ValueError("half_open_max_calls must be at least 1")


@dataclass(frozen=True, slots=True)
class BreakerPermit:
    """The answer to ``allow_request()``; hand it back to ``record()`` when allowed."""

    allowed: bool
    state: BreakerState
    generation: int
    trial: bool = False
    retry_after_seconds: float = 0.0
    """When refused: seconds until the breaker will admit a trial (0 when unknown)."""


TransitionListener = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """Counts consecutive failures and stops calls to an upstream that keeps failing."""

    def __init__(
        self,
        policy: BreakerPolicy,
        clock: Clock,
        on_transition: TransitionListener | None = None,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._trials_in_flight = 0
        self._closed_permit = BreakerPermit(True, BreakerState.CLOSED, 0)

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    @property
    def state(self) -> BreakerState:
        """The current state, moving OPEN to HALF_OPEN if the recovery timeout has passed."""
        if self._state is BreakerState.OPEN and self._recovery_due(self._clock.now()):
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def seconds_until_half_open(self) -> float:
        """Seconds left in OPEN before a trial is admitted; 0 in any other state."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._policy.recovery_timeout_seconds - self._clock.now())

    def allow_request(self) -> BreakerPermit:
        """Admit or refuse one call. An admitted call must be reported with ``record()``."""
        state = self._state
        if state is BreakerState.CLOSED:
            return self._closed_permit
        if state is BreakerState.OPEN:
            now = self._clock.now()
            if not self._recovery_due(now):
                retry_after = self._opened_at + self._policy.recovery_timeout_seconds - now
                return BreakerPermit(
                    False, state, self._generation, retry_after_seconds=retry_after
                )
            self._transition(BreakerState.HALF_OPEN)
        if self._trials_in_flight < self._policy.half_open_max_calls:
            self._trials_in_flight += 1
            return BreakerPermit(True, BreakerState.HALF_OPEN, self._generation, trial=True)
        return BreakerPermit(False, BreakerState.HALF_OPEN, self._generation)

    def record(self, permit: BreakerPermit, outcome: CallOutcome) -> None:
        """Report how an admitted call ended. Stale or refused permits change nothing."""
        if not permit.allowed or permit.generation != self._generation:
            return
        if permit.trial:
            self._trials_in_flight -= 1
        if outcome is CallOutcome.ABANDONED:
            return
        if self._state is BreakerState.HALF_OPEN:
            if outcome is CallOutcome.SUCCESS:
                self._transition(BreakerState.CLOSED)
            else:
                self._open()
            return
        if outcome is CallOutcome.SUCCESS:
            self._consecutive_failures = 0
            return
        self._consecutive_failures += 1
        if self._consecutive_failures >= self._policy.failure_threshold:
            self._open()

    def _recovery_due(self, now: float) -> bool:
        return now - self._opened_at >= self._policy.recovery_timeout_seconds

    def _open(self) -> None:
        self._opened_at = self._clock.now()
        self._transition(BreakerState.OPEN)

    def _transition(self, to: BreakerState) -> None:
        previous = self._state
        self._state = to
        self._generation += 1
        self._trials_in_flight = 0
        self._consecutive_failures = 0
        if to is BreakerState.CLOSED:
            self._closed_permit = BreakerPermit(True, BreakerState.CLOSED, self._generation)
        if self._on_transition is not None:
            self._on_transition(previous, to)
