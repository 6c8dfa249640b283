"""The retry budget: retries may add only a share on top of first attempts, over a sliding window.

Like Finagle's ``RetryBudget`` and Envoy's retry budgets: in any window (t - W, t], retries may
number at most ``percent`` % of the first attempts in it, plus a floor of
``min_retries_per_second * W`` so a quiet route can still retry. When the backend browns out,
every client request would otherwise become ``MAX_RETRIES + 1`` calls exactly when it can least
take them; with the budget the extra load is bounded.

Both logs hold only times inside the window and are trimmed from the front, so each call costs
amortized O(1).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from domain.ports import Clock


@dataclass(frozen=True, slots=True)
class RetryBudgetPolicy:
    percent: float = 20.0
    min_retries_per_second: float = 10.0
    window_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.percent < 0:
            raise ValueError("percent must not be negative")
        if self.min_retries_per_second < 0:
            raise ValueError("min_retries_per_second must not be negative")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be positive")


class RetryBudget:
    """Counts first attempts and retries; says whether one more retry fits."""

    def __init__(self, policy: RetryBudgetPolicy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock
        self._floor = policy.min_retries_per_second * policy.window_seconds
        self._share = policy.percent / 100.0
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    @property
    def policy(self) -> RetryBudgetPolicy:
        return self._policy

    def record_request(self) -> None:
        """One first attempt (a client request reaching the upstream) happened now."""
        self._requests.append(self._clock.now())

    def try_spend(self) -> bool:
        """Take one retry from the budget if it has room now; say whether it did."""
        now = self._clock.now()
        horizon = now - self._policy.window_seconds
        for log in (self._requests, self._retries):
            while log and log[0] <= horizon:
                log.popleft()
        if len(self._retries) + 1 > self._floor + self._share * len(self._requests):
            return False
        self._retries.append(now)
        return True

    def retries_available(self) -> float:
        """How many retries would fit right now (for tests and metrics)."""
        horizon = self._clock.now() - self._policy.window_seconds
        requests = sum(1 for t in self._requests if t > horizon)
        retries = sum(1 for t in self._retries if t > horizon)
        return self._floor + self._share * requests - retries
