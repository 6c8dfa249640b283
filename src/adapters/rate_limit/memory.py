"""The in-process storage: the domain's limiters, behind the async ``RateLimiter`` port.

Exact within one process; with several processes each keeps its own counts (the gateway refuses
to start that way, see ``gateway.cli``).
"""

from __future__ import annotations

from domain.ports import Clock
from domain.rate_limit import (
    RateLimitAlgorithm,
    RateLimitDecision,
    RateLimitPolicy,
    SlidingWindowCounter,
    SlidingWindowLimiter,
)


class InMemoryRateLimiter:
    def __init__(self, policy: RateLimitPolicy, clock: Clock) -> None:
        if policy.algorithm is RateLimitAlgorithm.SLIDING_COUNTER:
            self._limiter: SlidingWindowLimiter | SlidingWindowCounter = SlidingWindowCounter(
                policy, clock
            )
        else:
            self._limiter = SlidingWindowLimiter(policy, clock)

    @property
    def policy(self) -> RateLimitPolicy:
        return self._limiter.policy

    @property
    def tracked_clients(self) -> int | None:
        return self._limiter.tracked_clients

    async def allow_request(self, client_id: str) -> RateLimitDecision:
        return self._limiter.allow_request(client_id)

    async def aclose(self) -> None:
        """Nothing to close."""
