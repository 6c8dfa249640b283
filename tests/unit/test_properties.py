"""Random sequences of calls and clock moves against small reference models (hypothesis).

Each model is written here from the rules in the README, independently of the domain code, in
the plainest way (full histories, brute-force counts). Time moves in multiples of 1/8 s so the
window edges are hit exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from adapters.clock.fake import FakeClock
from domain.breaker import BreakerPermit, BreakerPolicy, BreakerState, CallOutcome, CircuitBreaker
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
