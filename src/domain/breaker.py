"""The circuit breaker: CLOSED -> OPEN -> HALF_OPEN -> CLOSED, driven by an injected clock.

A caller asks ``allow_request()`` before each upstream call and gets a ``BreakerPermit``; it then
hands the permit back with the call's outcome (and how long it took) to ``record()``, also when
the call was cancelled, so a HALF_OPEN trial can never leave its slot taken. Every method is
synchronous, so on one event loop each decision is atomic: twenty concurrent callers in
HALF_OPEN see exactly ``half_open_max_calls`` admissions.

When it opens (``BreakerMode``):

- ``CONSECUTIVE`` (the default): after ``failure_threshold`` failed calls in a row.
- ``FAILURE_RATE``: when the window of recent calls (``domain.breaker_window``: the last N calls
  or the last N seconds) holds at least the minimum number of calls and the share of failures
  in it reaches ``failure_rate_threshold_percent``.

In both modes, when ``slow_call_duration_seconds`` is set, a call that took longer is slow, and
the breaker also opens when the share of slow calls in the window reaches
``slow_call_rate_threshold_percent`` (with the same minimum). A slow success counts toward the
slow rate only; a slow failure toward both. A slow trial in HALF_OPEN reopens the breaker.

The n-th opening in a row stays OPEN for ``recovery_timeout_seconds * multiplier^(n-1)``,
capped (Resilience4j's rule): n is 1 when CLOSED opens, grows by one each time a HALF_OPEN
trial fails, and starts again when the breaker closes.

An operator may also force it (``force_open()``: every call refused; ``disable()``: every call
admitted, nothing recorded; ``reset()``: CLOSED with empty counters). Forced states change only
by another of those calls.

Permits carry the breaker's generation (bumped on every transition): an outcome reported for a
call admitted before the last transition is stale and changes nothing, so a slow success from an
earlier CLOSED period cannot close a breaker that has since opened.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from domain.breaker_window import CallWindow, CountWindow, TimeWindow
from domain.ports import Clock


class BreakerState(enum.Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"
    FORCED_OPEN = "FORCED_OPEN"
    """Set by an operator: every call refused until an operator changes it."""
    DISABLED = "DISABLED"
    """Set by an operator: every call admitted, nothing recorded, until an operator changes it."""


class BreakerMode(enum.Enum):
    CONSECUTIVE = "consecutive"
    FAILURE_RATE = "failure_rate"


class WindowType(enum.Enum):
    COUNT = "count"
    """The last ``sliding_window_size`` calls."""
    TIME = "time"
    """The calls of the last ``sliding_window_size`` seconds."""


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
    mode: BreakerMode = BreakerMode.CONSECUTIVE
    failure_rate_threshold_percent: float = 50.0
    sliding_window_type: WindowType = WindowType.COUNT
    sliding_window_size: int = 100
    minimum_calls: int = 20
    slow_call_duration_seconds: float = 0.0
    """0: no call is ever slow."""
    slow_call_rate_threshold_percent: float = 100.0
    recovery_backoff_multiplier: float = 1.0
    max_recovery_timeout_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.recovery_timeout_seconds <= 0:
            raise ValueError("recovery_timeout_seconds must be positive")
        if self.half_open_max_calls < 1:
            raise ValueError("half_open_max_calls must be at least 1")
        for name in ("failure_rate_threshold_percent", "slow_call_rate_threshold_percent"):
            if not 0 < getattr(self, name) <= 100:
                raise ValueError(f"{name} must be above 0 and at most 100")
        if self.sliding_window_size < 1:
            raise ValueError("sliding_window_size must be at least 1")
        if self.minimum_calls < 1:
            raise ValueError("minimum_calls must be at least 1")
        if self.slow_call_duration_seconds < 0:
            raise ValueError("slow_call_duration_seconds must not be negative")
        if self.recovery_backoff_multiplier < 1:
            raise ValueError("recovery_backoff_multiplier must be at least 1")
        if self.max_recovery_timeout_seconds <= 0:
            raise ValueError("max_recovery_timeout_seconds must be positive")
        if (
            self.recovery_backoff_multiplier > 1
            and self.max_recovery_timeout_seconds < self.recovery_timeout_seconds
        ):
            raise ValueError(
                "max_recovery_timeout_seconds must not be below recovery_timeout_seconds"
            )

    @property
    def keeps_window(self) -> bool:
        """Whether the breaker needs a window of recent calls (a rate to watch)."""
        return self.mode is BreakerMode.FAILURE_RATE or self.slow_call_duration_seconds > 0

    @property
    def effective_minimum_calls(self) -> int:
        """Calls the window must hold before a rate can open the breaker."""
        if self.sliding_window_type is WindowType.COUNT:
            return min(self.minimum_calls, self.sliding_window_size)
        return self.minimum_calls

    def open_seconds(self, opening: int) -> float:
        """How long the ``opening``-th opening in a row stays OPEN (1 is the first)."""
        base = self.recovery_timeout_seconds
        multiplier = self.recovery_backoff_multiplier
        if multiplier == 1 or opening <= 1:
            return base
        cap = self.max_recovery_timeout_seconds
        # Compared in logarithms, so a long run of failed trials never overflows a float.
        if (opening - 1) * math.log(multiplier) >= math.log(cap / base):
            return cap
        return float(min(base * multiplier ** (opening - 1), cap))

    def new_window(self) -> CallWindow | None:
        if not self.keeps_window:
            return None
        if self.sliding_window_type is WindowType.COUNT:
            return CountWindow(self.sliding_window_size)
        return TimeWindow(self.sliding_window_size)


@dataclass(frozen=True, slots=True)
class BreakerPermit:
    """The answer to ``allow_request()``; hand it back to ``record()`` when allowed."""

    allowed: bool
    state: BreakerState
    generation: int
    trial: bool = False
    retry_after_seconds: float = 0.0
    """When refused: seconds until the breaker will admit a trial (0 when unknown)."""


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """What an operator sees of one breaker."""

    state: BreakerState
    mode: BreakerMode
    calls: int
    """Calls in the window (0 when the breaker keeps none)."""
    failures: int
    slow_calls: int
    failure_rate_percent: float
    slow_call_rate_percent: float
    minimum_calls: int
    consecutive_failures: int
    openings_in_a_row: int
    open_seconds: float
    """OPEN: how long this opening lasts; otherwise how long the next opening would."""
    seconds_until_half_open: float


TransitionListener = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """Stops calls to an upstream that keeps failing, and lets a trial through now and then."""

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
        self._openings = 0
        self._open_seconds = policy.recovery_timeout_seconds
        self._trials_in_flight = 0
        self._window = policy.new_window()
        self._counts_consecutive = policy.mode is BreakerMode.CONSECUTIVE
        self._timed_window = policy.sliding_window_type is WindowType.TIME
        self._minimum_calls = policy.effective_minimum_calls
        self._failure_rate = (
            policy.failure_rate_threshold_percent
            if policy.mode is BreakerMode.FAILURE_RATE
            else math.inf
        )
        self._slow_after = policy.slow_call_duration_seconds or math.inf
        self._slow_rate = policy.slow_call_rate_threshold_percent
        self._closed_permit = BreakerPermit(True, BreakerState.CLOSED, 0)

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    @property
    def state(self) -> BreakerState:
        """The current state, moving OPEN to HALF_OPEN if the open time has passed."""
        if self._state is BreakerState.OPEN and self._recovery_due(self._clock.now()):
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def current_open_seconds(self) -> float:
        """OPEN: how long this opening lasts; otherwise how long the next opening would."""
        state = self.state
        if state is BreakerState.OPEN:
            return self._open_seconds
        if state is BreakerState.HALF_OPEN:
            return self._policy.open_seconds(self._openings + 1)
        return self._policy.open_seconds(1)

    def seconds_until_half_open(self) -> float:
        """Seconds left in OPEN before a trial is admitted; 0 in any other state."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._open_seconds - self._clock.now())

    def snapshot(self) -> BreakerSnapshot:
        """The breaker's state and the figures of its window, as of now."""
        state = self.state
        window = self._window
        calls = failures = slow = 0
        if window is not None:
            figures = window.figures(self._clock.now())
            calls, failures, slow = figures.calls, figures.failures, figures.slow_calls
        return BreakerSnapshot(
            state=state,
            mode=self._policy.mode,
            calls=calls,
            failures=failures,
            slow_calls=slow,
            failure_rate_percent=100.0 * failures / calls if calls else 0.0,
            slow_call_rate_percent=100.0 * slow / calls if calls else 0.0,
            minimum_calls=self._minimum_calls,
            consecutive_failures=self._consecutive_failures,
            openings_in_a_row=self._openings,
            open_seconds=self.current_open_seconds(),
            seconds_until_half_open=self.seconds_until_half_open(),
        )

    def allow_request(self) -> BreakerPermit:
        """Admit or refuse one call. An admitted call must be reported with ``record()``."""
        state = self._state
        if state is BreakerState.CLOSED or state is BreakerState.DISABLED:
            return self._closed_permit
        if state is BreakerState.FORCED_OPEN:
            return BreakerPermit(False, state, self._generation)
        if state is BreakerState.OPEN:
            now = self._clock.now()
            if not self._recovery_due(now):
                retry_after = self._opened_at + self._open_seconds - now
                return BreakerPermit(
                    False, state, self._generation, retry_after_seconds=retry_after
                )
            self._transition(BreakerState.HALF_OPEN)
        if self._trials_in_flight < self._policy.half_open_max_calls:
            self._trials_in_flight += 1
            return BreakerPermit(True, BreakerState.HALF_OPEN, self._generation, trial=True)
        return BreakerPermit(False, BreakerState.HALF_OPEN, self._generation)

    def record(
        self, permit: BreakerPermit, outcome: CallOutcome, duration_seconds: float = 0.0
    ) -> None:
        """Report how an admitted call ended and how long it took.

        Stale or refused permits change nothing; nor does anything while DISABLED.
        """
        if not permit.allowed or permit.generation != self._generation:
            return
        if permit.trial:
            self._trials_in_flight -= 1
        if outcome is CallOutcome.ABANDONED:
            return
        state = self._state
        if state is BreakerState.HALF_OPEN:
            if outcome is CallOutcome.SUCCESS and duration_seconds <= self._slow_after:
                self._transition(BreakerState.CLOSED)
            else:
                self._open()
            return
        if state is not BreakerState.CLOSED:
            return
        failed = outcome is CallOutcome.FAILURE
        if failed:
            self._consecutive_failures += 1
            if (
                self._counts_consecutive
                and self._consecutive_failures >= self._policy.failure_threshold
            ):
                self._open()
                return
        else:
            self._consecutive_failures = 0
        window = self._window
        if window is None:
            return
        window.record(
            self._clock.now() if self._timed_window else 0.0,
            failed,
            duration_seconds > self._slow_after,
        )
        calls = window.calls
        if calls >= self._minimum_calls and (
            window.failures * 100 >= self._failure_rate * calls
            or window.slow_calls * 100 >= self._slow_rate * calls
        ):
            self._open()

    # --- an operator's overrides ---------------------------------------------------------------

    def force_open(self) -> None:
        """Refuse every call until ``reset()`` or ``disable()``."""
        self._transition(BreakerState.FORCED_OPEN)

    def disable(self) -> None:
        """Admit every call and record nothing until ``reset()`` or ``force_open()``."""
        self._transition(BreakerState.DISABLED)

    def reset(self) -> None:
        """CLOSED, with empty counters and the open time back at its start."""
        self._transition(BreakerState.CLOSED)

    # --- internals -----------------------------------------------------------------------------

    def _recovery_due(self, now: float) -> bool:
        return now - self._opened_at >= self._open_seconds

    def _open(self) -> None:
        self._openings = self._openings + 1 if self._state is BreakerState.HALF_OPEN else 1
        self._open_seconds = self._policy.open_seconds(self._openings)
        self._opened_at = self._clock.now()
        self._transition(BreakerState.OPEN)

    def _transition(self, to: BreakerState) -> None:
        previous = self._state
        self._state = to
        self._generation += 1
        self._trials_in_flight = 0
        self._consecutive_failures = 0
        if to is BreakerState.CLOSED or to is BreakerState.DISABLED:
            self._closed_permit = BreakerPermit(True, to, self._generation)
        if to is BreakerState.CLOSED:
            self._openings = 0
            self._open_seconds = self._policy.recovery_timeout_seconds
            if self._window is not None:
                self._window.clear()
        if self._on_transition is not None and previous is not to:
            self._on_transition(previous, to)
