"""Random sequences of calls and clock moves against small reference models (hypothesis).

Each model is written here from the rules in the README, independently of the domain code, in
the plainest way (full histories, brute-force counts). Time moves in multiples of 1/8 s so the
window edges are hit exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from adapters.clock.fake import FakeClock
from domain.breaker import (
    BreakerMode,
    BreakerPermit,
    BreakerPolicy,
    BreakerState,
    CallOutcome,
    CircuitBreaker,
    WindowType,
)
from domain.rate_limit import RateLimitPolicy, SlidingWindowLimiter
from domain.retry_budget import RetryBudget, RetryBudgetPolicy

STEPS = st.integers(min_value=0, max_value=96).map(lambda eighths: eighths / 8)
FAST = settings(max_examples=150, stateful_step_count=60, deadline=None)


# --- circuit breaker -------------------------------------------------------------------------


@dataclass
class ModelCall:
    epoch: int
    trial: bool


class BreakerModel:
    """The README's breaker rules, written out plainly."""

    def __init__(self, threshold: int, recovery: float, trials: int) -> None:
        self.threshold, self.recovery, self.trials = threshold, recovery, trials
        self.state = "CLOSED"
        self.failures = 0
        self.opened_at = 0.0
        self.in_flight_trials = 0
        self.epoch = 0  # changes whenever the state changes; older calls no longer count

    def settle(self, now: float) -> None:
        if self.state == "OPEN" and now - self.opened_at >= self.recovery:
            self.enter("HALF_OPEN")

    def enter(self, state: str) -> None:
        self.state, self.epoch, self.failures, self.in_flight_trials = state, self.epoch + 1, 0, 0

    def admit(self, now: float) -> ModelCall | None:
        self.settle(now)
        if self.state == "CLOSED":
            return ModelCall(self.epoch, trial=False)
        if self.state == "HALF_OPEN" and self.in_flight_trials < self.trials:
            self.in_flight_trials += 1
            return ModelCall(self.epoch, trial=True)
        return None

    def finish(self, call: ModelCall, outcome: str, now: float) -> None:
        if call.epoch != self.epoch:
            return
        if call.trial:
            self.in_flight_trials -= 1
        if outcome == "abandoned":
            return
        if self.state == "HALF_OPEN":
            if outcome == "success":
                self.enter("CLOSED")
            else:
                self.enter("OPEN")
                self.opened_at = now
        elif outcome == "success":
            self.failures = 0
        else:
            self.failures += 1
            if self.failures >= self.threshold:
                self.enter("OPEN")
                self.opened_at = now


class BreakerMachine(RuleBasedStateMachine):
    @initialize(
        threshold=st.integers(1, 4), recovery=st.sampled_from([1.0, 2.5, 5.0]),
        trials=st.integers(1, 3),
    )  # fmt: skip
    def setup(self, threshold: int, recovery: float, trials: int) -> None:
        self.clock = FakeClock(0.0)
        self.breaker = CircuitBreaker(BreakerPolicy(threshold, recovery, trials), self.clock)
        self.model = BreakerModel(threshold, recovery, trials)
        self.held: list[tuple[BreakerPermit, ModelCall]] = []

    @rule()
    def ask(self) -> None:
        permit = self.breaker.allow_request()
        expected = self.model.admit(self.clock.now())
        assert permit.allowed == (expected is not None)
        if expected is not None:
            assert permit.trial == expected.trial
            self.held.append((permit, expected))

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 100), outcome=st.sampled_from(["success", "failure", "abandoned"]))
    def finish(self, index: int, outcome: str) -> None:
        permit, call = self.held.pop(index % len(self.held))
        self.breaker.record(permit, CallOutcome(outcome))
        self.model.finish(call, outcome, self.clock.now())

    @rule(seconds=STEPS)
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def same_state(self) -> None:
        if hasattr(self, "model"):
            self.model.settle(self.clock.now())
            assert self.breaker.state is BreakerState(self.model.state)


TestBreakerAgainstModel = BreakerMachine.TestCase
TestBreakerAgainstModel.settings = FAST


# --- breaker policies: failure rate, slow calls, growing open time, operator overrides -------


class PolicyModel:
    """The README's breaker-mode rules, with the full history of calls recorded while CLOSED.

    The window is recomputed from that history by brute force on every question: the last N
    calls, or the calls whose whole second is less than N seconds before now's.
    """

    def __init__(self, policy: BreakerPolicy) -> None:
        self.p = policy
        self.state = "CLOSED"
        self.epoch = 0
        self.failures_in_a_row = 0
        self.in_flight_trials = 0
        self.history: list[tuple[float, bool, bool]] = []
        self.openings = 0
        self.opened_at = 0.0

    def keeps_window(self) -> bool:
        return self.p.mode is BreakerMode.FAILURE_RATE or self.p.slow_call_duration_seconds > 0

    def window(self, now: float) -> list[tuple[float, bool, bool]]:
        size = self.p.sliding_window_size
        if self.p.sliding_window_type is WindowType.COUNT:
            return self.history[-size:]
        return [c for c in self.history if math.floor(now) - math.floor(c[0]) < size]

    def open_time(self) -> float:
        p = self.p
        if p.recovery_backoff_multiplier == 1:
            return p.recovery_timeout_seconds
        grown = p.recovery_timeout_seconds * p.recovery_backoff_multiplier ** (self.openings - 1)
        return min(grown, p.max_recovery_timeout_seconds)

    def enter(self, state: str) -> None:
        self.state, self.epoch = state, self.epoch + 1
        self.failures_in_a_row = self.in_flight_trials = 0
        if state == "CLOSED":
            self.history, self.openings = [], 0

    def open(self, now: float) -> None:
        self.openings = self.openings + 1 if self.state == "HALF_OPEN" else 1
        self.opened_at = now
        self.enter("OPEN")

    def settle(self, now: float) -> None:
        if self.state == "OPEN" and now - self.opened_at >= self.open_time():
            self.enter("HALF_OPEN")

    def admit(self, now: float) -> ModelCall | None:
        self.settle(now)
        if self.state in ("CLOSED", "DISABLED"):
            return ModelCall(self.epoch, trial=False)
        if self.state == "HALF_OPEN" and self.in_flight_trials < self.p.half_open_max_calls:
            self.in_flight_trials += 1
            return ModelCall(self.epoch, trial=True)
        return None

    def finish(self, call: ModelCall, outcome: str, seconds: float, now: float) -> None:
        if call.epoch != self.epoch:
            return
        if call.trial:
            self.in_flight_trials -= 1
        if outcome == "abandoned":
            return
        slow_after = self.p.slow_call_duration_seconds
        slow = slow_after > 0 and seconds > slow_after
        if self.state == "HALF_OPEN":
            if outcome == "success" and not slow:
                self.enter("CLOSED")
            else:
                self.open(now)
            return
        if self.state != "CLOSED":
            return
        failed = outcome == "failure"
        self.failures_in_a_row = self.failures_in_a_row + 1 if failed else 0
        if self.p.mode is BreakerMode.CONSECUTIVE and self.failures_in_a_row >= (
            self.p.failure_threshold
        ):
            self.open(now)
            return
        if not self.keeps_window():
            return
        self.history.append((now, failed, slow))
        window = self.window(now)
        minimum = self.p.minimum_calls
        if self.p.sliding_window_type is WindowType.COUNT:
            minimum = min(minimum, self.p.sliding_window_size)
        if len(window) < minimum:
            return
        failed_share = 100 * sum(1 for c in window if c[1]) / len(window)
        slow_share = 100 * sum(1 for c in window if c[2]) / len(window)
        if (
            self.p.mode is BreakerMode.FAILURE_RATE
            and failed_share >= self.p.failure_rate_threshold_percent
        ) or (slow_after > 0 and slow_share >= self.p.slow_call_rate_threshold_percent):
            self.open(now)


class PolicyMachine(RuleBasedStateMachine):
    @initialize(
        mode=st.sampled_from(BreakerMode), window_type=st.sampled_from(WindowType),
        size=st.integers(1, 5), minimum=st.integers(1, 6),
        rate=st.sampled_from([25.0, 50.0, 100.0]), slow_after=st.sampled_from([0.0, 1.0]),
        slow_rate=st.sampled_from([50.0, 100.0]), multiplier=st.sampled_from([1.0, 2.0, 3.0]),
        threshold=st.integers(1, 3), trials=st.integers(1, 2),
    )  # fmt: skip
    def setup(
        self, mode: BreakerMode, window_type: WindowType, size: int, minimum: int, rate: float,
        slow_after: float, slow_rate: float, multiplier: float, threshold: int, trials: int,
    ) -> None:  # fmt: skip
        policy = BreakerPolicy(
            failure_threshold=threshold, recovery_timeout_seconds=1.0, half_open_max_calls=trials,
            mode=mode, failure_rate_threshold_percent=rate, sliding_window_type=window_type,
            sliding_window_size=size, minimum_calls=minimum, slow_call_duration_seconds=slow_after,
            slow_call_rate_threshold_percent=slow_rate, recovery_backoff_multiplier=multiplier,
            max_recovery_timeout_seconds=5.0,
        )  # fmt: skip
        self.clock = FakeClock(0.0)
        self.breaker = CircuitBreaker(policy, self.clock)
        self.model = PolicyModel(policy)
        self.held: list[tuple[BreakerPermit, ModelCall]] = []

    @rule()
    def ask(self) -> None:
        permit = self.breaker.allow_request()
        now = self.clock.now()
        expected = self.model.admit(now)
        assert permit.allowed == (expected is not None)
        if expected is not None:
            assert permit.trial == expected.trial
            self.held.append((permit, expected))
        elif self.model.state == "OPEN":
            assert permit.retry_after_seconds == self.model.opened_at + self.model.open_time() - now

    @precondition(lambda self: self.held)
    @rule(
        index=st.integers(0, 100), outcome=st.sampled_from(["success", "failure", "abandoned"]),
        seconds=st.sampled_from([0.0, 0.5, 1.0, 1.5]),
    )  # fmt: skip
    def finish(self, index: int, outcome: str, seconds: float) -> None:
        permit, call = self.held.pop(index % len(self.held))
        self.breaker.record(permit, CallOutcome(outcome), seconds)
        self.model.finish(call, outcome, seconds, self.clock.now())

    @rule(outcome=st.sampled_from(["success", "failure"]), seconds=st.sampled_from([0.0, 1.0, 1.5]))
    def call(self, outcome: str, seconds: float) -> None:
        permit = self.breaker.allow_request()
        expected = self.model.admit(self.clock.now())
        assert permit.allowed == (expected is not None)
        if expected is not None:
            self.breaker.record(permit, CallOutcome(outcome), seconds)
            self.model.finish(expected, outcome, seconds, self.clock.now())

    @rule(seconds=st.integers(0, 16).map(lambda quarters: quarters / 4))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(action=st.sampled_from(["force_open", "disable", "reset", "none", "none", "none"]))
    def operator(self, action: str) -> None:
        """Now and then (one draw in two) an operator forces a state."""
        if action == "none":
            return
        getattr(self.breaker, action)()
        self.model.enter({"force_open": "FORCED_OPEN", "disable": "DISABLED"}.get(action, "CLOSED"))

    @invariant()
    def same_state_and_window(self) -> None:
        if hasattr(self, "model"):
            now = self.clock.now()
            self.model.settle(now)
            snapshot = self.breaker.snapshot()
            assert snapshot.state is BreakerState(self.model.state)
            assert snapshot.openings_in_a_row == self.model.openings
            if self.model.keeps_window():
                window = self.model.window(now)
                assert snapshot.calls == len(window)
                assert snapshot.failures == sum(1 for c in window if c[1])
                assert snapshot.slow_calls == sum(1 for c in window if c[2])


TestBreakerPoliciesAgainstModel = PolicyMachine.TestCase
TestBreakerPoliciesAgainstModel.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)


# --- sliding-window limiter ------------------------------------------------------------------


class LimiterMachine(RuleBasedStateMachine):
    """Model: every allowed request's time, counted by brute force over (t - W, t]."""

    @initialize(limit=st.integers(1, 4), window=st.sampled_from([1.0, 2.0, 5.0]))
    def setup(self, limit: int, window: float) -> None:
        self.clock = FakeClock(0.0)
        self.limit, self.window = limit, window
        self.limiter = SlidingWindowLimiter(RateLimitPolicy(limit, window), self.clock)
        self.allowed: dict[str, list[float]] = {}

    @rule(client=st.sampled_from(["a", "b", "c"]))
    def request(self, client: str) -> None:
        now = self.clock.now()
        in_window = sorted(t for t in self.allowed.get(client, []) if t > now - self.window)
        decision = self.limiter.allow_request(client)
        assert decision.allowed == (len(in_window) < self.limit)
        if decision.allowed:
            self.allowed.setdefault(client, []).append(now)
            assert decision.remaining == self.limit - len(in_window) - 1
        else:
            assert decision.remaining == 0
            assert decision.retry_after_seconds == in_window[0] + self.window - now

    @rule(seconds=STEPS)
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def remembers_only_recent_clients(self) -> None:
        if hasattr(self, "limiter"):
            now = self.clock.now()
            recent = {c for c, ts in self.allowed.items() if ts and ts[-1] > now - self.window}
            assert self.limiter.tracked_clients >= len(recent)
            assert self.limiter.tracked_clients <= len(self.allowed)


TestLimiterAgainstModel = LimiterMachine.TestCase
TestLimiterAgainstModel.settings = FAST


# --- retry budget ----------------------------------------------------------------------------


class BudgetMachine(RuleBasedStateMachine):
    """Model: full histories of first attempts and retries, counted over (t - W, t]."""

    @initialize(
        percent=st.sampled_from([0.0, 20.0, 50.0, 100.0]), floor=st.sampled_from([0.0, 0.5])
    )
    def setup(self, percent: float, floor: float) -> None:
        self.clock = FakeClock(0.0)
        self.percent, self.floor, self.window = percent, floor, 4.0
        self.budget = RetryBudget(RetryBudgetPolicy(percent, floor, self.window), self.clock)
        self.requests: list[float] = []
        self.retries: list[float] = []

    def count(self, times: list[float]) -> int:
        return sum(1 for t in times if t > self.clock.now() - self.window)

    @rule()
    def first_attempt(self) -> None:
        self.budget.record_request()
        self.requests.append(self.clock.now())

    @rule()
    def retry(self) -> None:
        room = self.floor * self.window + self.percent / 100 * self.count(self.requests)
        expected = self.count(self.retries) + 1 <= room
        assert self.budget.try_spend() == expected
        if expected:
            self.retries.append(self.clock.now())

    @rule(seconds=STEPS)
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)


TestBudgetAgainstModel = BudgetMachine.TestCase
TestBudgetAgainstModel.settings = FAST
