"""The ``UpstreamPort`` over httpx (``UPSTREAM_CLIENT=httpx``): the design card's client.

Requests are built and answers read with httpx's own API (``AsyncClient.build_request``,
``send(stream=True)``, ``aiter_raw``); the transport is httpcore's connection pool (what httpx
uses by default, HTTP/1.1 through h11) with one addition: its network streams pass every byte
read through a ``ResponseGuard``, so this adapter holds answers to the same ``UpstreamLimits``
as the others. httpx's own habits a gateway must not have are turned off: no cookie jar that
keeps what one answer set (its policy accepts no cookie), no redirects, no proxy or netrc from
the environment, no default ``User-Agent``/``Accept`` headers, and bodies are passed on raw.

An event stream (``text/event-stream``) is handed over as soon as its head is read: iterating
``aiter_raw()`` then gives each piece as httpcore reads it (h11 hands on whatever data a read
brought), and a silence between two is bounded by ``stream_idle_timeout_seconds``. A ``host``
field the gateway put first in the headers (a route that preserves the client's Host) is the one
sent: httpx writes its own only when none is given; the TLS server name is still the URL's host.

It costs several times the CPU per request of the default client (``bench/README.md``): pick it
when httpx's behaviour matters more than throughput.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpcore
import httpx

from adapters.backend_client.guard import ResponseGuard
from adapters.backend_client.hop_by_hop import end_to_end
from adapters.backend_client.limits import UpstreamLimits
from adapters.clock.http_dates import parse_retry_after
from domain.errors import UpstreamBadAnswer, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from domain.ports import Body, UpstreamRequest, UpstreamResponse


# httpcore's network-stream interface takes ``timeout`` parameters; these classes implement it.
class _GuardedStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, limits: UpstreamLimits) -> None:
        self._inner = inner
        self._limits = limits
        self._guard = ResponseGuard(limits)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        data = await self._inner.read(max_bytes, timeout)
        self._guard.received(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self._guard.idle:  # h11 writes a request's head in one piece, before its body
            self._guard.request_sent(buffer.startswith(b"HEAD "))
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _GuardedStream(inner, self._limits)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, limits: UpstreamLimits) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._limits = limits

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _GuardedStream(stream, self._limits)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PoolTransport(httpx.AsyncBaseTransport):
    """httpx's transport over an httpcore pool we configure (httpx's own takes no backend)."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        answer = await self._pool.handle_async_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_ByteStream(answer),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class _ByteStream(httpx.AsyncByteStream):
    def __init__(self, answer: httpcore.Response) -> None:
        self._answer = answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._answer.aiter_stream():
            yield chunk

    async def aclose(self) -> None:
        await self._answer.aclose()


class _AnswerStream:
    """The rest of one streamed answer."""

    def __init__(self, answer: httpx.Response, chunks: AsyncIterator[bytes], idle: float) -> None:
        self._answer = answer
        self._chunks_in = chunks
        self._idle = idle
        self._finished = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    async with asyncio.timeout(self._idle):
                        chunk = await anext(self._chunks_in, b"")
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"the upstream sent no more of the body within {self._idle:.3f}s"
                    ) from None
                except UpstreamError:
                    raise
                except (httpx.HTTPError, httpcore.TimeoutException, httpcore.NetworkError) as error:
                    raise UpstreamUnavailable(f"the body broke off: {error}") from error
                except httpcore.ProtocolError as error:
                    raise UpstreamUnavailable(f"the body broke off: {error}") from error
                if not chunk:
                    return
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self._finished:
            self._finished = True
            await self._answer.aclose()


class HttpxUpstream:
    """Sends requests to one base URL through httpx's client and a guarded httpcore pool."""

    def __init__(
        self,
        base_url: str,
        pool_size: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        limits: UpstreamLimits | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._pool_size = pool_size
        self._ssl = ssl_context or ssl.create_default_context()
        self._limits = limits or UpstreamLimits()
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Open the pool. Must run inside the event loop that will use it."""
        if self._client is None:
            pool = httpcore.AsyncConnectionPool(
                ssl_context=self._ssl,
                max_connections=self._pool_size,
                max_keepalive_connections=self._pool_size,
                network_backend=_GuardedBackend(self._limits),
            )
            client = httpx.AsyncClient(
                transport=_PoolTransport(pool),
                cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # keeps none
                follow_redirects=False,
                trust_env=False,
                timeout=None,
            )
            client.headers.clear()  # no User-Agent, Accept or Accept-Encoding of httpx's own
            self._client = client

    async def aclose(self) -> None:
        """Close the pool; in-flight requests fail as connection errors."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def send(self, request: UpstreamRequest, timeout_seconds: float) -> UpstreamResponse:
        if self._client is None:
            await self.start()
        client = self._client
        assert client is not None
        target = self._base_url + request.path
        if request.query:
            target = f"{target}?{request.query}"
        limits = self._limits
        body = request.body
        fields = list(request.headers)
        if body or request.method in ("POST", "PUT", "PATCH"):
            # Declared, so httpx sends the body as it is, without chunking or a copy of it.
            fields.append(("content-length", str(len(body))))
        outgoing = client.build_request(
            request.method,
            httpx.URL(target),
            headers=fields,
            content=_one_chunk(body) if body else None,
        )
        answer: httpx.Response | None = None
        streaming = False
        try:
            async with asyncio.timeout(timeout_seconds):
                answer = await client.send(outgoing, stream=True)
                chunks_in = answer.aiter_raw()
                if _event_stream(answer, request.method):
                    # Nothing buffered: each event goes on as it arrives.
                    headers, retry_after = _headers(answer), _retry_after(answer)
                    idle = limits.stream_idle_timeout_seconds
                    rest = _AnswerStream(answer, chunks_in, idle)
                    streaming = True
                    return UpstreamResponse(answer.status_code, headers, b"", retry_after, rest)
                chunks: list[bytes] = []
                read = 0
                async for chunk in chunks_in:
                    chunks.append(chunk)
                    read += len(chunk)
                    if read > limits.buffer_bytes:
                        streaming = True
                        break
                body_out = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                retry_after = _retry_after(answer)
                headers = _headers(answer)
                if not streaming:
                    return UpstreamResponse(answer.status_code, headers, body_out, retry_after)
                rest = _AnswerStream(answer, chunks_in, timeout_seconds)
                return UpstreamResponse(answer.status_code, headers, body_out, retry_after, rest)
        except (TimeoutError, httpcore.TimeoutException) as error:
            raise UpstreamTimeout(f"no answer within {timeout_seconds:.3f}s") from error
        except UpstreamError:
            raise
        except (httpx.RemoteProtocolError, httpx.DecodingError, httpcore.ProtocolError) as error:
            if _closed_early(error):
                raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error
            raise UpstreamBadAnswer(f"malformed answer: {error}") from error
        except (httpx.HTTPError, httpcore.NetworkError) as error:
            raise UpstreamUnavailable(f"{type(error).__name__}: {error}") from error
        finally:
            if answer is not None and not streaming:
                await answer.aclose()


def _event_stream(answer: httpx.Response, method: str) -> bool:
    """Whether the answer is an event stream with a body to come."""
    content_type = answer.headers.get("content-type")
    return (
        content_type is not None
        and method != "HEAD"
        and answer.status_code not in (204, 304)
        and UpstreamLimits.is_event_stream(content_type)
    )


def _headers(answer: httpx.Response) -> tuple[tuple[str, str], ...]:
    return tuple(
        end_to_end(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.headers.raw
        )
    )


def _retry_after(answer: httpx.Response) -> float | None:
    if answer.status_code >= 400 and "retry-after" in answer.headers:
        return parse_retry_after(answer.headers["retry-after"])
    return None


async def _one_chunk(body: Body) -> AsyncIterator[bytes]:
    yield body  # type: ignore[misc]  # bytes-like: a bytearray is written as it is


def _closed_early(error: Exception) -> bool:
    """h11 reports a connection closed before or during an answer as a protocol error."""
    text = str(error)
    return "closed" in text or "incomplete" in text or "disconnected" in text
