"""The ports the domain is driven by: time and the upstream service.

They are ``typing.Protocol`` classes so that adapters (and test fakes) satisfy them by shape,
without importing anything from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

Headers = tuple[tuple[str, str], ...]
Body = bytes | bytearray
"""A request body as read from the client: one buffer, never a second joined copy."""


class Clock(Protocol):
    """Monotonic time in seconds. Only differences between two readings mean anything."""

    def now(self) -> float: ...


class Sleeper(Protocol):
    """Waits for a while without blocking the event loop."""

    async def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One request to send upstream: the path is the upstream's, the body raw bytes.

    ``Host`` is the adapter's to write, from the upstream URL's authority, unless ``headers``
    starts with a ``("host", value)`` pair (name in lower case): then the adapter sends exactly
    that ``Host`` and not its own. It is how a route that preserves the client's Host passes it
    on; only the first field is looked at (one check per request, no scan), so a ``host`` field
    anywhere else is not this convention and must not be put there.
    """

    method: str
    path: str
    query: str = ""
    headers: Headers = ()
    body: Body = b""


class BodyStream(Protocol):
    """The rest of an answer too large to hold: its chunks, read as the client takes them.

    Iterating raises ``UpstreamError`` when the upstream stops short, stalls or sends more than
    the bound; ``aclose()`` gives up on the rest (the connection is then not reused). Exactly one
    of the two ends every stream.
    """

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """What the upstream answered, body passed through as bytes."""

    status: int
    headers: Headers = ()
    body: bytes = b""
    """The whole body, or when ``rest`` is set its first part."""
    retry_after_seconds: float | None = None
    """The upstream's ``Retry-After``, already turned into seconds from now by the adapter."""
    rest: BodyStream | None = None
    """The body's remainder when it did not fit the adapter's buffer: stream it, then it ends."""


class UpstreamPort(Protocol):
    """Sends one request upstream.

    Raises ``UpstreamTimeout`` when no answer (its head, and its body when small) arrived within
    ``timeout_seconds``, ``UpstreamUnavailable`` when the connection failed or dropped, and
    ``UpstreamBadAnswer`` when the answer broke HTTP or the adapter's bounds. Any HTTP status,
    5xx included, is a normal return. A large body comes back as ``rest``, to be streamed.
    """

    async def send(self, request: UpstreamRequest, timeout_seconds: float) -> UpstreamResponse: ...
