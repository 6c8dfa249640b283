"""How the gateway is served by uvicorn: bounded client connections, problem+json, a clean SIGTERM.

uvicorn's httptools protocol has no bound on how long a client may take to send its request, how
large a request head may grow while it arrives, or how many connections may be open; an idle
socket that never sends a byte stays open for ever. ``GatewayHttpProtocol`` extends it with
those bounds (``ClientLimits``), since uvicorn cannot express them by configuration:

- The request head (request line and header fields) must be complete within
  ``header_timeout_seconds`` of the moment the server starts waiting for it (the connection
  opening, or the previous response ending): a connection that sent nothing is closed quietly,
  one that sent part of a head gets a 408 problem first. Only ``max_head_bytes`` of a head are
  parsed; a larger one gets a 431 problem and the connection is closed.
- A body must keep arriving: no more than ``body_timeout_seconds`` between two reads (nginx's
  ``client_body_timeout``), unless the server itself paused reading because the app has not
  taken what came. Past it the client gets a 408 problem (when no answer had started) and the
  connection is closed; the app's ``receive()`` then reports a disconnect.
- At most ``max_connections`` connections are open at once; one more gets a 503 problem written
  at once and is closed after a short linger (``LINGER_SECONDS``, at most ``MAX_LINGERING`` at
  once), without any of it being parsed.
- A request that is not valid HTTP (an unknown method such as ``BREW``, a malformed header
  line) never reaches the app: it gets a problem+json 400, not uvicorn's plain text.
- Each request's scope carries the connection (``CONNECTION_KEY``), so a streamed answer whose
  upstream breaks off can cut the client's connection rather than end the body as if complete.

``raise_open_file_limit`` lifts the soft limit on open files to the hard one at start, so the
connection cap rather than ``EMFILE`` decides when connections are refused.

On SIGTERM or SIGINT uvicorn stops accepting, lets requests in flight finish (bounded by
``timeout_graceful_shutdown``), runs the lifespan shutdown (which closes the upstream pool), and
then re-raises the signal, so the process dies by it. ``GracefulServer`` keeps all of that but
returns normally, so the process exits 0 as orchestrators expect of a clean stop.

uvicorn waits for open responses before it shuts down, and an event stream never ends by itself.
``GracefulServer.on_shutdown_begin`` holds callbacks run the moment a shutdown begins, before
that wait (the dashboard's hub ends its streams there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from adapters.http.context import ON_SHUTDOWN_KEY, context_of
from adapters.http.problems import PROBLEM_KINDS, PROBLEM_TYPE
from adapters.http.proxy import CONNECTION_KEY

_STATUS_LINES = {
    400: b"HTTP/1.1 400 Bad Request\r\n",
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
    503: b"HTTP/1.1 503 Service Unavailable\r\n",
}
_KIND_OF_STATUS = {
    400: "invalid-request",
    408: "request-timeout",
    431: "headers-too-large",
    503: "too-many-connections",
}
CLIENT_LIMITS = "resilient_gateway_client_limits"
LINGER_SECONDS = 0.5
"""How long a refused connection stays half-open so the client reads its 503 before the close."""
MAX_LINGERING = 32
"""Refused connections lingering at once; more are closed right after their 503 is written, so a
flood of connections cannot hold more file descriptors than the cap leaves spare."""
_LINGERING = "resilient_gateway_lingering"


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What one client connection may cost the gateway."""

    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    max_connections: int = 10_000
    max_head_bytes: int = 64 * 1024


DEFAULT_CLIENT_LIMITS = ClientLimits()


def problem_bytes(status: int, detail: str, request_id: str, extra: bytes = b"") -> bytes:
    """A whole HTTP/1.1 answer with a problem+json body, written by the protocol itself."""
    type_uri, title = PROBLEM_KINDS[_KIND_OF_STATUS[status]]
    problem = {
        "type": type_uri,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request_id,
    }
    body = json.dumps(problem, separators=(",", ":")).encode()
    return b"".join(
        [
            _STATUS_LINES[status],
            b"content-type: " + PROBLEM_TYPE.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"x-request-id: " + request_id.encode("ascii") + b"\r\n",
            extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def bad_request_body(message: str, request_id: str) -> bytes:
    """The problem+json body of a 400 for a request that is not valid HTTP."""
    type_uri, _ = PROBLEM_KINDS["invalid-request"]
    problem = {
        "type": type_uri,
        "title": "Malformed HTTP request",
        "status": 400,
        "detail": message,
        "instance": request_id,
    }
    return json.dumps(problem, separators=(",", ":")).encode()


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's protocol, answering requests that are not valid HTTP with problem+json."""

    def send_400_response(self, msg: str) -> None:
        request_id = uuid.uuid4().hex
        body = bad_request_body(msg, request_id)
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + PROBLEM_TYPE.encode() + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"x-request-id: " + request_id.encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


COALESCE_MAX_BYTES = 64 * 1024
"""Held bytes that go out at once, without waiting for the end of the turn."""


class CoalescingTransport:
    """A client connection's transport whose writes within one turn of the event loop leave
    as one: uvicorn writes an answer's head and its body apart, two system calls (and two
    wake-ups of the client) where one does. Held bytes go out at the end of the turn, before
    any other callback can read the connection's state, and before a close; an abort drops
    them. Everything else is the real transport's."""

    __slots__ = ("_flush_scheduled", "_held", "_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._held = 0
        self._flush_scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending.append(bytes(data) if not isinstance(data, bytes) else data)
        self._held += len(data)
        if self._held >= COALESCE_MAX_BYTES:  # a large answer goes out as it comes
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is held now (the end of the turn calls it too)."""
        self._flush_scheduled = False
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._held = 0
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._held = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayHttpProtocol(ProblemHttpToolsProtocol):
    """The server protocol with time, size and count bounds on what clients send."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: ClientLimits = getattr(config, CLIENT_LIMITS, DEFAULT_CLIENT_LIMITS)
        self._refused = False
        self._discarding = False
        self._reading_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_began = 0.0
        self._in_body = False
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_body_read = 0.0

    # connections
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refuse_connection(transport)
            return
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self._arm_head_timer()

    def _refuse_connection(self, transport: asyncio.Transport) -> None:
        self._refused = True
        self.transport = transport
        detail = (
            f"The gateway has its maximum of {self.limits.max_connections} client connections "
            "open; try again shortly."
        )
        transport.write(problem_bytes(503, detail, uuid.uuid4().hex, b"retry-after: 1\r\n"))
        state = self.server_state
        lingering = getattr(state, _LINGERING, 0)
        if lingering >= MAX_LINGERING:
            transport.close()
            return
        setattr(state, _LINGERING, lingering + 1)
        with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
            transport.write_eof()  # the answer goes out; what the client sends is read and dropped

        def close() -> None:
            setattr(state, _LINGERING, getattr(state, _LINGERING) - 1)
            transport.close()

        self.loop.call_later(LINGER_SECONDS, close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self._discarding:
            return
        limit = self.limits.max_head_bytes
        while data:
            if not self._reading_head:
                if self._in_body:
                    self._last_body_read = self.loop.time()
                super().data_received(data)
                break
            # Only what the head being read may still take is parsed at once; a head that does
            # not complete within its limit is too large. Heads completed in a piece reset the
            # count, so many small pipelined requests in one read are all served.
            room = limit - self._head_bytes
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self._head_bytes += len(piece)
            super().data_received(piece)
            if self.transport.is_closing():
                return
            if self._reading_head and self._head_bytes >= limit:
                self._end_with(431, f"The request head is over the limit of {limit} bytes.")
                return
        if self._reading_head and self._head_bytes and self._head_timer is None:
            # Part of a head came and the rest did not (most heads come whole, in one read, and
            # need no timer): it must complete within the timeout from its first byte.
            waited = self.loop.time() - self._head_began
            self._arm_head_timer(self.limits.header_timeout_seconds - waited)
        self._watch_body()

    # parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_began = self.loop.time()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        self._in_body = True
        self._last_body_read = self.loop.time()
        self.scope[CONNECTION_KEY] = self  # type: ignore[literal-required]
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_head = True
        self._in_body = False
        self._cancel_body_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._in_body and not self.transport.is_closing():
            # Answered before its body was read (a 429, a 503, a 404): none of the rest is taken.
            self.server_state.total_requests += 1
            self._close_after_answer()
            return
        super().on_response_complete()  # an idle kept-alive connection: uvicorn's timer closes it

    def _close_after_answer(self) -> None:
        """Half-close after the answer, drop what the client still sends, close a bit later."""
        self._discarding = True
        self._in_body = False
        self._cancel_body_timer()
        self.flow.resume_reading()
        with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def shutdown(self) -> None:
        """The server is stopping: an open endless answer is told to end, then uvicorn's rule."""
        if not self._refused:
            stop = self.scope.get(ON_SHUTDOWN_KEY) if self.scope is not None else None
            if callable(stop) and self.cycle is not None and not self.cycle.response_complete:
                stop()
            super().shutdown()

    # the connection handle a streamed answer uses
    @property
    def lost(self) -> bool:
        cycle = self.cycle
        return cycle is None or cycle.disconnected or self.transport.is_closing()

    def abort(self) -> None:
        """Cut the connection in the middle of an answer; later sends are dropped."""
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.transport.close()

    # timers
    def _arm_head_timer(self, seconds: float | None = None) -> None:
        if seconds is None:
            seconds = self.limits.header_timeout_seconds
        self._head_timer = self.loop.call_later(max(0.0, seconds), self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete and self._head_bytes == 0:
            return  # a request is being answered; the next head's wait starts after it
        if self._head_bytes == 0:
            self.transport.close()  # an idle connection: closed without a word, as keep-alive is
            return
        self._end_with(
            408,
            f"The request head did not arrive within {self.limits.header_timeout_seconds:g} s.",
        )

    def _watch_body(self) -> None:
        if self._in_body and self._body_timer is None and not self.transport.is_closing():
            self._body_timer = self.loop.call_later(
                self.limits.body_timeout_seconds, self._body_check
            )

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_check(self) -> None:
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        idle = self.loop.time() - self._last_body_read
        if self.flow.read_paused:  # waiting for the app, not for the client
            self._last_body_read = self.loop.time()
            idle = 0.0
        if idle < self.limits.body_timeout_seconds:
            self._body_timer = self.loop.call_later(
                self.limits.body_timeout_seconds - idle, self._body_check
            )
            return
        self._end_with(
            408,
            f"The request body stopped arriving for {self.limits.body_timeout_seconds:g} s.",
        )

    def _end_with(self, status: int, detail: str) -> None:
        """Answer ``status`` if an answer can still be sent, then close; the app sees a
        disconnect."""
        cycle = self.cycle
        if self._reading_head:  # between requests: the last answer, if any, must be complete
            can_answer, in_request = cycle is None or cycle.response_complete, False
        else:
            can_answer, in_request = cycle is not None and not cycle.response_started, True
        if can_answer:
            request_id = uuid.uuid4().hex
            if in_request:
                state = context_of(self.scope)  # type: ignore[arg-type]
                request_id = state.get("request_id") or request_id
                state["closed_with"] = status
            self.transport.write(problem_bytes(status, detail, request_id))
        if in_request and cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def configure(config: uvicorn.Config, limits: ClientLimits) -> uvicorn.Config:
    """Serve with ``GatewayHttpProtocol`` bound to ``limits`` (kept on the config, which uvicorn
    hands to every protocol and pickles for every worker process)."""
    config.http = GatewayHttpProtocol
    setattr(config, CLIENT_LIMITS, limits)
    return config


def raise_open_file_limit(ceiling: int = 1_048_576) -> tuple[int, int, int]:
    """Lift the soft limit on open files to the hard one (at most ``ceiling``).

    Returns the soft limit before, the soft limit now and the hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            target = soft
        return soft, target, hard
    return soft, soft, hard


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.on_shutdown_begin: list[Callable[[], None]] = []
        """Called, in order, when a shutdown begins: before open responses are waited for."""
        self.on_hangup: Callable[[], Awaitable[object]] | None = None
        """Run on the event loop on each SIGHUP (the route table's reload)."""
        self._hangups: set[asyncio.Task[object]] = set()

    def _hang_up(self) -> None:
        if self.on_hangup is None or self.should_exit:
            return
        task: asyncio.Task[object] = asyncio.ensure_future(self.on_hangup())
        self._hangups.add(task)
        task.add_done_callback(self._hangups.discard)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for callback in self.on_shutdown_begin:
            callback()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        if self.on_hangup is not None:
            loop = asyncio.get_running_loop()
            previous[signal.SIGHUP] = signal.signal(
                signal.SIGHUP, lambda *_: loop.call_soon_threadsafe(self._hang_up)
            )
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
