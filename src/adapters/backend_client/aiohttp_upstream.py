"""The ``UpstreamPort`` over aiohttp: one pooled client session per process.

Why aiohttp and not the httpx API as the alternative client: see ``bench/README.md``; this module
is the only place that knows which library is used.

The session keeps no per-response state: ``DummyCookieJar`` drops every cookie the upstream
sets, so one user's cookie can never ride along on another user's request. ``trust_env=False``
keeps proxy variables of the environment out of it, and bodies stay compressed as they came
(``auto_decompress=False``) since they are passed through as bytes.

Bounds (``UpstreamLimits``), the same as the other adapters': ``_GuardedHandler`` (aiohttp's
response protocol, given to the connector) passes every byte through the same llhttp-based
``ResponseGuard`` the httpx adapter uses before aiohttp's parser sees it, so the framing rules
are llhttp's for all three clients (bare LF line ends, control characters in fields, duplicate
or conflicting framing are refused) and a header section over its limit, an endless stream of
``102`` (aiohttp would spin through it without yielding), an unrequested ``101`` (aiohttp hands
it to the caller) or bytes after the answer never reach aiohttp. The body is counted as it is
read; a large one is handed over as a stream, read as the client takes it (aiohttp's reader
pauses the socket past its buffer). An event stream (``text/event-stream``) is handed over as
soon as its head is read, none of its body awaited: ``readany()`` then gives each piece as it
arrives, and a silence between two is bounded by ``stream_idle_timeout_seconds``.

A ``host`` field the gateway put first in the headers (a route that preserves the client's Host)
replaces the one aiohttp would write (``ClientRequest.update_headers``); the TLS server name is
still the URL's host.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from adapters.backend_client.guard import ResponseGuard
from adapters.backend_client.hop_by_hop import end_to_end
from adapters.backend_client.limits import UpstreamLimits
from adapters.clock.http_dates import parse_retry_after
from domain.errors import UpstreamBadAnswer, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from domain.ports import UpstreamRequest, UpstreamResponse


class _GuardedHandler(ResponseHandler):
    """aiohttp's response protocol, with every byte checked by a ``ResponseGuard`` first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: UpstreamLimits) -> None:
        super().__init__(loop)
        self._guard = ResponseGuard(limits)
        self._refused = False

    def set_response_params(self, **params: Any) -> None:
        self._guard.request_sent(bool(params.get("skip_payload", False)))
        self._refused = False
        super().set_response_params(**params)  # bytes that came early are checked from here

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._parser is not None:  # before the request's parameters, aiohttp only queues
            try:
                self._guard.received(data)
            except UpstreamBadAnswer as error:
                self._refused = True
                self.set_exception(error)
                if self._payload is not None:  # a body being read breaks off, never just ends
                    self._payload.set_exception(error)
                if self.transport is not None:
                    self.transport.close()
                return
        super().data_received(data)


class _GuardedConnector(aiohttp.TCPConnector):
    def __init__(self, limits: UpstreamLimits, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._factory = functools.partial(  # type: ignore[assignment]
            _GuardedHandler, loop=self._loop, limits=limits
        )


class _AnswerStream:
    """The rest of one streamed answer, counted against the body limit."""

    def __init__(
        self, answer: aiohttp.ClientResponse, read: int, limits: UpstreamLimits, idle: float
    ) -> None:
        self._answer = answer
        self._read = read
        self._limits = limits
        self._idle = idle
        self._finished = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        complete = False
        try:
            while True:
                chunk = await _read_some(self._answer, self._idle)
                if not chunk:
                    complete = True
                    return
                self._read += len(chunk)
                if self._read > self._limits.max_body_bytes:
                    raise self._limits.body_too_large()
                yield chunk
        finally:
            self._finish(complete)

    async def aclose(self) -> None:
        self._finish(False)

    def _finish(self, complete: bool) -> None:
        if not self._finished:
            self._finished = True
            if complete:
                self._answer.release()
            else:
                self._answer.close()


async def _read_some(answer: aiohttp.ClientResponse, idle: float) -> bytes:
    try:
        async with asyncio.timeout(idle):
            return await answer.content.readany()
    except TimeoutError:
        raise UpstreamTimeout(f"the upstream sent no more of the body within {idle:.3f}s") from None
    except aiohttp.ClientPayloadError as error:
        raise UpstreamUnavailable(f"the body broke off: {error}") from error
    except aiohttp.ClientError as error:
        raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error


class AiohttpUpstream:
    """Sends requests to one base URL through a shared, bounded connection pool."""

    def __init__(
        self,
        base_url: str,
        pool_size: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        limits: UpstreamLimits | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._pool_size = pool_size
        self._ssl: ssl.SSLContext | bool = ssl_context or True
        self._limits = limits or UpstreamLimits()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pool. Must run inside the event loop that will use it."""
        if self._session is None:
            limits = self._limits
            connector = _GuardedConnector(
                limits,
                limit=self._pool_size,
                limit_per_host=self._pool_size,
                ttl_dns_cache=60,
                ssl=self._ssl,
            )
            field_size = limits.max_header_bytes  # the guard holds the section to it in all
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
                timeout=aiohttp.ClientTimeout(total=None),
                max_line_size=field_size,
                max_field_size=field_size,
                max_headers=limits.max_headers,
            )

    async def aclose(self) -> None:
        """Close the pool; in-flight requests fail as connection errors."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def send(self, request: UpstreamRequest, timeout_seconds: float) -> UpstreamResponse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        target = self._base_url + request.path
        if request.query:
            target = f"{target}?{request.query}"
        limits = self._limits
        answer: aiohttp.ClientResponse | None = None
        streaming = complete = False
        try:
            async with asyncio.timeout(timeout_seconds):
                answer = await self._session.request(
                    request.method,
                    URL(target, encoded=True),
                    headers=request.headers,
                    data=request.body or None,
                    allow_redirects=False,
                )
                if answer.content_length is not None:
                    limits.check_content_length(str(answer.content_length))
                if _event_stream(answer, request.method):
                    # Nothing buffered: each event goes on as it arrives.
                    headers, retry_after = _headers(answer), _retry_after(answer)
                    rest = _AnswerStream(answer, 0, limits, limits.stream_idle_timeout_seconds)
                    streaming = True
                    return UpstreamResponse(answer.status, headers, b"", retry_after, rest)
                chunks: list[bytes] = []
                read = 0
                while chunk := await answer.content.readany():
                    chunks.append(chunk)
                    read += len(chunk)
                    if read > limits.max_body_bytes:
                        raise limits.body_too_large()
                    if read > limits.buffer_bytes:
                        streaming = True
                        break
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                retry_after = _retry_after(answer)
                headers = _headers(answer)
                if not streaming:
                    complete = True
                    return UpstreamResponse(answer.status, headers, body, retry_after)
                rest = _AnswerStream(answer, read, limits, timeout_seconds)
                return UpstreamResponse(answer.status, headers, body, retry_after, rest)
        except TimeoutError as error:
            raise UpstreamTimeout(f"no answer within {timeout_seconds:.3f}s") from error
        except UpstreamError:
            raise
        except aiohttp.ClientResponseError as error:
            # Its message may quote the upstream's bytes; the client is told the kind only.
            raise UpstreamBadAnswer(f"malformed answer ({type(error).__name__})") from error
        except aiohttp.ClientError as error:
            raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error
        finally:
            if answer is not None and not streaming:
                if complete:
                    answer.release()  # read to its end: the connection may be reused
                else:
                    answer.close()


def _event_stream(answer: aiohttp.ClientResponse, method: str) -> bool:
    """Whether the answer is an event stream with a body to come."""
    content_type = answer.headers.get("Content-Type")
    return (
        content_type is not None
        and method != "HEAD"
        and answer.status not in (204, 304)
        and UpstreamLimits.is_event_stream(content_type)
    )


def _headers(answer: aiohttp.ClientResponse) -> tuple[tuple[str, str], ...]:
    return tuple(
        end_to_end(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.raw_headers
        )
    )


def _retry_after(answer: aiohttp.ClientResponse) -> float | None:
    if answer.status >= 400 and "Retry-After" in answer.headers:
        return parse_retry_after(answer.headers["Retry-After"])
    return None
