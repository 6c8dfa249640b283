"""Ports the application needs beyond the domain's: where it reports what happened."""

from __future__ import annotations

from typing import Protocol

from domain.breaker import BreakerState


class RouteMetrics(Protocol):
    """Counts the events of one route. Implemented by the metrics adapter."""

    def rate_limit_decided(self, allowed: bool) -> None: ...

    def circuit_rejected(self) -> None:
        """A request was refused by the breaker before any upstream attempt."""

    def retry_stopped_by_breaker(self) -> None:
        """A retry was not made because the breaker had opened after a real attempt."""

    def upstream_answer_cut(self, kind: str) -> None:
        """A streamed answer failed after its head was passed on (``kind`` as the error's)."""

    def upstream_attempted(self, outcome: str) -> None:
        """``outcome`` is ``success``, ``http_5xx``, ``timeout``, ``connection_error`` or
        ``bad_answer``."""

    def retry_attempted(self) -> None:
        """An attempt after the first was sent upstream."""

    def retry_refused(self) -> None:
        """A retry was not made because the retry budget was spent."""

    def bulkhead_rejected(self) -> None:
        """A call was not made because the upstream had its maximum in flight."""

    def rate_limit_store_failed(self) -> None:
        """The limiter's storage failed or was too slow; no decision was made."""

    def breaker_transitioned(self, previous: BreakerState, current: BreakerState) -> None: ...


class NullRouteMetrics:
    """Counts nothing: for callers that do not observe a route."""

    def rate_limit_decided(self, allowed: bool) -> None:
        pass

    def circuit_rejected(self) -> None:
        pass

    def retry_stopped_by_breaker(self) -> None:
        pass

    def upstream_answer_cut(self, kind: str) -> None:
        pass

    def upstream_attempted(self, outcome: str) -> None:
        pass

    def retry_attempted(self) -> None:
        pass

    def retry_refused(self) -> None:
        pass

    def bulkhead_rejected(self) -> None:
        pass

    def rate_limit_store_failed(self) -> None:
        pass

    def breaker_transitioned(self, previous: BreakerState, current: BreakerState) -> None:
        pass
