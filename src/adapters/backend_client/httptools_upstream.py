"""The ``UpstreamPort`` over asyncio protocols and ``httptools``: HTTP/1.1 with keep-alive.

The gateway sends requests to a known upstream and passes the answers through as bytes, so it
needs little of a general HTTP client: no cookies, redirects, proxies from the environment,
decompression or URL merging. This adapter does only what is left: it writes the request in one
``write`` (two for a large body, never joined into a copy), parses the answer with ``httptools``
(the llhttp parser uvicorn uses on the server side: Content-Length, chunked, and read-until-close
bodies, strict about duplicate or conflicting framing), and keeps the connection for the next
request when both sides allow it. ``UPSTREAM_CLIENT=aiohttp`` and ``httpx`` select the others;
one test suite runs against all three.

Bounds (``UpstreamLimits``): the header section, interim answers included, is fed to the parser
only up to its byte limit, so an enormous or endless head costs no more than that; header fields
are counted; a ``Content-Length`` over the body limit is refused before its body is read, and a
body without one is counted as it arrives. Trailer fields are never promoted to headers. An
answer up to ``buffer_bytes`` is held whole; a larger one is handed over after its first part as
a stream (``rest``) that reads on as the client takes it: past ``stream_high_water_bytes`` unread,
reading from the upstream pauses, so a slow client never makes the gateway hold a fast
upstream's answer. While streaming, no read may wait longer than the attempt's timeout. An event
stream (``text/event-stream``) is handed over as soon as its head is parsed, every piece passed
on as it arrives, and may be silent for ``stream_idle_timeout_seconds`` between two pieces.

The request carries ``Host: <the base URL's authority>`` unless the gateway put a ``host`` field
first in its headers (a route that preserves the client's Host): then that one, and only it.

Connections: at most ``pool_size`` in use at once (later requests wait for one, inside their
timeout), idle ones reused last-in first-out so a few stay warm; a streamed answer keeps its
connection until it ends. A pooled connection the upstream has since closed is noticed when it
hangs up, and a request that finds its reused connection closed before any byte of the answer
arrived is sent once more on a new connection when its method is idempotent, as browsers and
aiohttp do: that is the keep-alive race, not a failure of the upstream.

A connection drops its parser (which refers back to it) when it closes, and an answer's buffers
when it is handed over, so nothing of a large answer outlives it waiting for the cyclic garbage
collector; with the start-up heap frozen (``gateway.heap``) that collector rarely runs.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

from adapters.backend_client.hop_by_hop import HOP_BY_HOP, connection_tokens
from adapters.backend_client.limits import UpstreamLimits
from adapters.clock.http_dates import parse_retry_after
from domain.errors import UpstreamBadAnswer, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from domain.ports import Body, UpstreamRequest, UpstreamResponse

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_JOIN_BELOW = 64 * 1024


class _StaleConnection(Exception):
    """A reused connection was closed before any byte of the answer arrived."""


class _Violation(Exception):
    """Raised inside a parser callback to stop parsing; the reason is kept on the connection."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, limits: UpstreamLimits) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._limits = limits
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._ready: asyncio.Future[None] | None = None
        self._active = False
        self._begin(False)

    def _begin(self, head: bool) -> None:
        self._head = head
        self._received_any = False
        self._head_bytes = 0
        self._after_head_bytes = 0
        self._fields = 0
        self._interim = 0
        self._final_head = False
        self._length_known = False
        self._complete = False
        self._trailing = False
        self._broken = False
        self._violation: UpstreamError | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self._named: set[str] = set()
        self.retry_after: str | None = None
        self.chunks: list[bytes] = []
        self._buffered = 0
        self._body_bytes = 0
        self.keep_alive = False
        self.event_stream = False
        # streaming
        self.streaming = False
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._stream_error: UpstreamError | None = None
        self._stream_failed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        if not self._active or self._complete or self._broken:
            self.close()  # bytes nobody asked for: this connection cannot be trusted again
            return
        if self._final_head:
            self._after_head_bytes += len(data)
            limits = self._limits
            if self._after_head_bytes > 2 * limits.max_body_bytes + limits.max_header_bytes:
                self._fail(limits.body_too_large())  # framing or trailers without end
                return
            self._feed(data)
            return
        room = self._limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._feed(data)
            return
        # Only the bytes the header section may still take go to the parser; if the final head
        # is not complete within them, the section is too large.
        self._head_bytes += room
        self._feed(data[:room])
        if self._broken or self.closed:
            return
        if not self._final_head:
            self._fail(self._limits.head_too_large())
            return
        self._after_head_bytes += len(data) - room
        self._feed(data[room:])

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._parser = None  # it refers back to this protocol: break the cycle now
        ready = self._ready
        body_ends_at_close = self._final_head and not self._length_known and not self._head
        if ready is not None and not ready.done():
            if body_ends_at_close:
                self._complete = True
                ready.set_result(None)
            elif self.reused and not self._received_any:
                ready.set_exception(_StaleConnection())
            else:
                ready.set_exception(
                    UpstreamUnavailable(
                        "the upstream closed the connection before a complete answer"
                    )
                )
        elif self.streaming and not self._complete:
            if body_ends_at_close:
                self._complete = True
            elif not self._stream_failed:
                self._stream_failed = True
                self._stream_error = UpstreamUnavailable(
                    "the upstream closed the connection in the middle of the body"
                )
            self._wake()

    def pause_writing(self) -> None:  # the request body is written at once; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._complete:  # a second answer nobody asked for, in the same bytes as this one
            self._trailing = True
            self._violation = self._limits.trailing_bytes()
            raise _Violation

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._final_head:
            return  # a trailer field: never promoted to a header
        self._fields += 1
        if self._fields > self._limits.max_headers:
            self._violation = self._limits.too_many_headers()
            raise _Violation
        lowered = name.lower()
        if lowered in (b"content-length", b"transfer-encoding"):
            self._length_known = True
            try:
                if lowered == b"content-length":
                    self._limits.check_content_length(value.decode("latin-1"))
                else:
                    self._limits.check_transfer_encoding(value.decode("latin-1"))
            except UpstreamBadAnswer as error:
                self._violation = error
                raise _Violation from None
        elif lowered == b"retry-after":
            self.retry_after = value.decode("latin-1")
        elif lowered == b"content-type":
            self.event_stream = UpstreamLimits.is_event_stream(value.decode("latin-1"))
        elif lowered == b"connection":
            self._named.update(connection_tokens(value.decode("latin-1")))
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # an interim answer: the real one follows
            self._interim += 1
            if self._interim > self._limits.max_interim_answers:
                self._violation = self._limits.too_many_interim()
                raise _Violation
            self._fields = 0
            self.headers.clear()
            self._named.clear()
            self._length_known = False
            self.retry_after = None
            self.event_stream = False
            return
        try:
            self._limits.check_status(status)
        except UpstreamBadAnswer as error:
            self._violation = error
            raise _Violation from None
        self.status = status
        self._final_head = True
        if self._head or status in (204, 304):
            self._length_known = True
        if self._head:
            self.keep_alive = False
            self._complete = True
            self._resolve()
        elif self.event_stream and status not in (204, 304):
            self.streaming = True  # no buffer to fill: each event goes on as it arrives
            self._resolve()

    def on_body(self, body: bytes) -> None:
        if self._complete:  # a body after a HEAD answer: nobody asked for it
            self._trailing = True
            self._violation = self._limits.trailing_bytes()
            raise _Violation
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body_bytes:
            self._violation = self._limits.body_too_large()
            raise _Violation
        if self.streaming:
            self._pending.append(body)
            self._pending_bytes += len(body)
            if not self._paused and self._pending_bytes > self._limits.stream_high_water_bytes:
                self._paused = True
                assert self.transport is not None
                self.transport.pause_reading()
            self._wake()
            return
        self.chunks.append(body)
        self._buffered += len(body)
        if self._buffered > self._limits.buffer_bytes:
            self.streaming = True  # too large to hold: hand over what is here, stream the rest
            self._resolve()

    def on_message_complete(self) -> None:
        if not self._final_head or self._complete:
            return  # the end of an interim answer, or of a HEAD answer already handed over
        assert self._parser is not None
        self.keep_alive = self._parser.should_keep_alive()
        self._complete = True
        if self.streaming:
            self._wake()
        else:
            self._resolve()

    # use
    async def exchange(self, head: bytes, body: Body, is_head: bool) -> None:
        """Send one request and wait for its answer's head and first part (or all of it)."""
        assert self.transport is not None
        self._begin(is_head)
        self._active = True
        self._ready = asyncio.get_running_loop().create_future()
        if len(body) < _JOIN_BELOW:
            self.transport.write(head + body if body else head)
        else:
            self.transport.write(head)
            self.transport.write(body)
        try:
            await self._ready
        finally:
            self._ready = None  # its exception's traceback would refer back to this frame

    def take_answer(self) -> tuple[int, list[tuple[str, str]], bytes, float | None]:
        """The answer's status, end-to-end headers, body (or first part) and Retry-After."""
        if self._trailing:
            raise self._limits.trailing_bytes()
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        named = self._named
        headers = [
            (name, value)
            for name, value in self.headers
            if (lowered := name.lower()) not in HOP_BY_HOP and lowered not in named
        ]
        self.headers = []
        retry_after = None
        if self.status >= 400 and self.retry_after is not None:
            retry_after = parse_retry_after(self.retry_after)
        return self.status, headers, body, retry_after

    @property
    def reusable(self) -> bool:
        return self._complete and self.keep_alive and not self.closed

    async def next_chunk(self, idle_timeout: float) -> bytes | None:
        """While streaming: the next part of the body, ``None`` at its end."""
        while True:
            if self._pending:
                pending = self._pending
                chunk = pending.popleft() if len(pending) == 1 else b"".join(pending)
                pending.clear()
                self._pending_bytes = 0
                if self._paused and not self.closed:
                    self._paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                return chunk
            if self._stream_error is not None:
                error, self._stream_error = self._stream_error, None
                raise error
            if self._stream_failed:
                raise UpstreamUnavailable("the answer's stream has already failed")
            if self._complete:
                if self._trailing:
                    raise self._limits.trailing_bytes()
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(idle_timeout):
                    await self._waiter
            except TimeoutError:
                self.close()
                raise UpstreamTimeout(
                    f"the upstream sent no more of the body within {idle_timeout:.3f}s"
                ) from None
            finally:
                self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _feed(self, data: bytes) -> None:
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except _Violation:
            pass
        except httptools.HttpParserCallbackError as error:
            if not isinstance(error.__context__, _Violation):
                raise
        except httptools.HttpParserUpgrade:
            self._violation = UpstreamBadAnswer(
                "the upstream switched protocols (101) without being asked"
            )
        except httptools.HttpParserError as error:
            self._violation = UpstreamBadAnswer(f"malformed answer: {error}")
        if self._violation is not None:
            violation, self._violation = self._violation, None
            self._fail(violation)

    def _resolve(self) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        self._broken = True
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        elif self.streaming and not self._stream_failed:
            self._stream_failed = True
            self._stream_error = error
            self._wake()
        self.close()


class _AnswerStream:
    """The rest of one streamed answer; gives its connection and pool slot back at the end."""

    def __init__(
        self, connection: _Connection, done: Callable[[_Connection, bool], None], idle: float
    ) -> None:
        self._connection = connection
        self._done = done
        self._idle = idle
        self._finished = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        reusable = False
        try:
            while (chunk := await self._connection.next_chunk(self._idle)) is not None:
                yield chunk
            reusable = self._connection.reusable
        finally:
            self._finish(reusable)

    async def aclose(self) -> None:
        self._finish(False)

    def _finish(self, reusable: bool) -> None:
        if not self._finished:
            self._finished = True
            self._done(self._connection, reusable)


class HttptoolsUpstream:
    """Sends requests to one base URL (``http://`` or ``https://``) over pooled connections."""

    def __init__(
        self,
        base_url: str,
        pool_size: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        limits: UpstreamLimits | None = None,
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
        self._limits = limits or UpstreamLimits()
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Connection] = []
        self._in_use: set[_Connection] = set()

    @property
    def limits(self) -> UpstreamLimits:
        return self._limits

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
        slots = self._slots
        assert slots is not None
        head = self._encode_head(request)
        is_head = request.method == "HEAD"
        acquired = False
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(timeout_seconds):
                await slots.acquire()
                acquired = True
                try:
                    connection = await self._exchange(head, request.body, is_head)
                except _StaleConnection:
                    if request.method not in IDEMPOTENT:
                        raise UpstreamUnavailable(
                            "the upstream closed a kept-alive connection as the request was sent"
                        ) from None
                    connection = await self._exchange(head, request.body, is_head, fresh=True)
            status, headers, body, retry_after = connection.take_answer()
        except TimeoutError as error:
            self._abandon(connection, acquired)
            raise UpstreamTimeout(f"no answer within {timeout_seconds:.3f}s") from error
        except BaseException:
            self._abandon(connection, acquired)
            raise
        if not connection.streaming:
            self._done(connection, connection.reusable)
            return UpstreamResponse(status, tuple(headers), body, retry_after)
        idle = (
            self._limits.stream_idle_timeout_seconds if connection.event_stream else timeout_seconds
        )
        rest = _AnswerStream(connection, self._done, idle)
        return UpstreamResponse(status, tuple(headers), body, retry_after, rest)

    async def _exchange(
        self, head: bytes, body: Body, is_head: bool, fresh: bool = False
    ) -> _Connection:
        connection = None if fresh else self._take_idle()
        if connection is None:
            connection = await self._connect()
        self._in_use.add(connection)
        try:
            await connection.exchange(head, body, is_head)
        except BaseException:
            self._in_use.discard(connection)
            connection.close()
            raise
        return connection

    def _done(self, connection: _Connection, reusable: bool) -> None:
        """An answer is over: its connection goes back to the pool or is closed."""
        self._in_use.discard(connection)
        if reusable:
            connection.reused = True
            self._idle.append(connection)
        else:
            connection.close()
        assert self._slots is not None
        self._slots.release()

    def _abandon(self, connection: _Connection | None, acquired: bool) -> None:
        """A send failed: its connection (if it got one) is closed, its pool slot freed."""
        if connection is not None:
            self._in_use.discard(connection)
            connection.close()
        if acquired:
            assert self._slots is not None
            self._slots.release()

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        limits = self._limits
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(limits),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
        except OSError as error:
            raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error
        return connection

    def _encode_head(self, request: UpstreamRequest) -> bytes:
        target = self._prefix + request.path
        if request.query:
            target = f"{target}?{request.query}"
        headers = request.headers
        host = self._host_header
        if headers and _is_host(headers[0][0]):  # the client's Host, preserved: it and no other
            host = headers[0][1].encode("latin-1")
            headers = headers[1:]
        lines = [f"{request.method} {target} HTTP/1.1".encode("latin-1"), b"host: " + host]
        for name, value in headers:
            lines.append(f"{name}: {value}".encode("latin-1"))
        if request.body or request.method in _METHODS_WITH_BODY:
            lines.append(b"content-length: %d" % len(request.body))
        lines.append(b"\r\n")
        return b"\r\n".join(lines)


def _is_host(name: str) -> bool:
    """Whether a field name is ``host`` (the gateway writes it in lower case; any case counts)."""
    return len(name) == 4 and name.lower() == "host"
