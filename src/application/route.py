"""A route: one gateway path in front of one upstream, with the policies it owns.

Every stateful policy (breaker, limiter) is an instance owned by its route, so a route table with
several upstreams is configuration: each entry gets its own breaker, limiter and retry policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.breaker import CircuitBreaker
from domain.bulkhead import Bulkhead
from domain.ports import UpstreamPort
from domain.rate_limit import RateLimiter
from domain.retry import RetryPolicy
from domain.retry_budget import RetryBudget

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods a retry cannot make happen twice (RFC 9110 section 9.2.2; TRACE is never routed)."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a gateway path goes and how calls to it are protected."""

    name: str
    path: str
    """The gateway's path, e.g. ``/api/v1/data``, or its prefix when ``prefix`` is set."""
    upstream_path: str
    """The path on the upstream, e.g. ``/flaky-data``; for a prefix route, what replaces the
    prefix (``""`` strips it)."""
    upstream: UpstreamPort
    breaker: CircuitBreaker
    retry_policy: RetryPolicy
    limiter: RateLimiter | None
    """``None`` when rate limiting is off for this route."""
    attempt_timeout_seconds: float
    request_timeout_seconds: float
    methods: tuple[str, ...] = ("GET",)
    retry_budget: RetryBudget | None = None
    """``None``: retries are bounded by ``max_retries`` and the deadline only."""
    bulkhead: Bulkhead | None = None
    """``None``: no cap on calls in flight to this upstream."""
    min_attempt_seconds: float = 0.05
    """No attempt starts with less time than this left before the deadline."""
    rate_limit_fail_open: bool = True
    """When the limiter's storage fails: let the request through (True) or answer 503."""
    prefix: bool = False
    """``path`` is a prefix matched on a segment boundary, not an exact path."""
    upstream_name: str = "backend"
    """The upstream's name: every route to it shares its breaker, bulkhead and retry budget."""
    retry_non_idempotent: bool = False
    """Retry POST and PATCH too; otherwise only ``IDEMPOTENT_METHODS`` are ever sent twice."""
