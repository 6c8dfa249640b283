"""The ``UpstreamPort`` over asyncio protocols and ``httptools``: HTTP/1.1 with keep-alive.

The gateway sends one kind of request to a known upstream and passes the answer through as
bytes, so it needs little of a general HTTP client: no cookies, redirects, proxies from the
environment, decompression or URL merging. This adapter does only what is left: it writes the
request in one ``write``, parses the answer with ``httptools`` (the llhttp parser uvicorn uses on
the server side: Content-Length, chunked, and read-until-close bodies, strict about garbage), and
keeps the connection for the next request when both sides allow it. The client alone costs about
60 % of aiohttp's CPU per request, and the whole gateway about 35 % less with it than with aiohttp
(``bench/README.md``); ``UPSTREAM_CLIENT=aiohttp`` selects that one instead, and the same tests
run against both.

Connections: at most ``pool_size`` in use at once (later requests wait for one, inside their
timeout), idle ones reused last-in first-out so a few stay warm. A pooled connection the upstream
has since closed is noticed when it hangs up, and a request that finds its reused connection
closed before any byte of the answer arrived is sent once more on a new connection when its
method is idempotent, as browsers and aiohttp do: that is the keep-alive race, not a failure of
the upstream.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast
from urllib.parse import urlsplit

import httptools

from adapters.backend_client.hop_by_hop import HOP_BY_HOP
from adapters.clock.http_dates import parse_retry_after
from domain.errors import UpstreamTimeout, UpstreamUnavailable
from domain.ports import Headers, UpstreamRequest, UpstreamResponse

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class _StaleConnection(Exception):
    """A reused connection was closed before any byte of the answer arrived."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[None] | None = None
        self._head = False
        self._received_any = False
        self._headers_done = False
        self._length_known = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.retry_after: str | None = None
        self._body: list[bytes] = []
        self.keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        if self._answer is None or self._answer.done():
            self.close()  # bytes nobody asked for: this connection cannot be trusted again
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamUnavailable("the upstream switched protocols"))
        except httptools.HttpParserError as error:
            self._fail(UpstreamUnavailable(f"malformed answer: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self._answer
        if answer is None or answer.done():
            return
        if self._headers_done and not self._length_known and not self._head:
            answer.set_result(None)  # no Content-Length, not chunked: the body ends at close
        elif self.reused and not self._received_any:
            answer.set_exception(_StaleConnection())
        else:
            answer.set_exception(
                UpstreamUnavailable("the upstream closed the connection before a complete answer")
            )

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-length" or lowered == b"transfer-encoding":
            self._length_known = True
        if lowered == b"retry-after":
            self.retry_after = value.decode("latin-1")
        if lowered.decode("latin-1") not in HOP_BY_HOP:
            self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200:  # an interim answer: the real one follows
            self._headers_done = False
            self.headers.clear()
            self.retry_after = None
            return
        if self._head or self.status in (204, 304):
            self._length_known = True
        if self._head:
            self.keep_alive = False
            self._finish()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._headers_done:
            self.keep_alive = self._parser.should_keep_alive()
            self._finish()

    # use
    async def exchange(self, data: bytes, head: bool) -> UpstreamResponse:
        """Send one request and read its answer, complete, before anyone can reuse this."""
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._head = head
        self._received_any = False
        self._headers_done = False
        self._length_known = False
        self.status = 0
        self.headers = []
        self.retry_after = None
        self._body = []
        self.keep_alive = False
        self.transport.write(data)
        await self._answer
        retry_after = None
        if self.status >= 400 and self.retry_after is not None:
            retry_after = parse_retry_after(self.retry_after)
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        headers: Headers = tuple(self.headers)
        return UpstreamResponse(self.status, headers, body, retry_after)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)
        self.close()


class HttptoolsUpstream:
    """Sends requests to one base URL (``http://`` or ``https://``) over pooled connections."""

    def __init__(
        self, base_url: str, pool_size: int = 100, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":  # verified against the system's CAs unless told otherwise
            self._ssl = ssl_context or ssl.create_default_context()
        self._prefix = parts.path.rstrip("/")
        self._host_header = parts.netloc.rsplit("@", 1)[-1].encode("idna")
        self._pool_size = pool_size
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Connection] = []
        self._in_use: set[_Connection] = set()

    async def start(self) -> None:
        """Create the pool's bound. Must run inside the event loop that will use it."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._pool_size)

    async def aclose(self) -> None:
        """Close every connection; in-flight requests fail as connection errors."""
        for connection in [*self._idle, *self._in_use]:
            connection.close()
        self._idle.clear()

    async def send(self, request: UpstreamRequest, timeout_seconds: float) -> UpstreamResponse:
        if self._slots is None:
            await self.start()
        assert self._slots is not None
        data = self._encode(request)
        head = request.method == "HEAD"
        try:
            async with asyncio.timeout(timeout_seconds), self._slots:
                try:
                    return await self._exchange(data, head)
                except _StaleConnection:
                    if request.method not in IDEMPOTENT:
                        raise UpstreamUnavailable(
                            "the upstream closed a kept-alive connection as the request was sent"
                        ) from None
                    return await self._exchange(data, head, fresh=True)
        except TimeoutError as error:
            raise UpstreamTimeout(f"no complete answer within {timeout_seconds:.3f}s") from error

    async def _exchange(self, data: bytes, head: bool, fresh: bool = False) -> UpstreamResponse:
        connection = None if fresh else self._take_idle()
        if connection is None:
            connection = await self._connect()
        self._in_use.add(connection)
        try:
            answer = await connection.exchange(data, head)
        except BaseException:
            connection.close()
            raise
        finally:
            self._in_use.discard(connection)
        if connection.keep_alive and not connection.closed:
            connection.reused = True
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
        except OSError as error:
            raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error
        return connection

    def _encode(self, request: UpstreamRequest) -> bytes:
        target = self._prefix + request.path
        if request.query:
            target = f"{target}?{request.query}"
        lines = [
            f"{request.method} {target} HTTP/1.1".encode("latin-1"),
            b"host: " + self._host_header,
        ]
        for name, value in request.headers:
            lines.append(f"{name}: {value}".encode("latin-1"))
        if request.body or request.method in _METHODS_WITH_BODY:
            lines.append(b"content-length: %d" % len(request.body))
        lines.append(b"")
        lines.append(request.body)
        return b"\r\n".join(lines)
