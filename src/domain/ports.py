"""The ports the domain is driven by: time and the upstream service.

They are ``typing.Protocol`` classes so that adapters (and test fakes) satisfy them by shape,
without importing anything from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Headers = tuple[tuple[str, str], ...]


class Clock(Protocol):
    """Monotonic time in seconds. Only differences between two readings mean anything."""

    def now(self) -> float: ...


class Sleeper(Protocol):
    """Waits for a while without blocking the event loop."""

    async def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One request to send upstream: the path is the upstream's, the body raw bytes."""

    method: str
    path: str
    query: str = ""
    headers: Headers = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """What the upstream answered, body passed through as bytes."""

    status: int
    headers: Headers = ()
    body: bytes = b""
    retry_after_seconds: float | None = None
    """The upstream's ``Retry-After``, already turned into seconds from now by the adapter."""


class UpstreamPort(Protocol):
    """Sends one request upstream.

    Raises ``UpstreamTimeout`` when no complete answer arrived within ``timeout_seconds`` and
    ``UpstreamUnavailable`` when the connection failed or the answer was not valid HTTP.
    Any HTTP status, 5xx included, is a normal return.
    """

    async def send(self, request: UpstreamRequest, timeout_seconds: float) -> UpstreamResponse: ...
