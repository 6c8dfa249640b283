"""Both upstream adapters against real sockets: the same answers, errors as domain errors.

Every test runs against ``HttptoolsUpstream`` (the default), ``AiohttpUpstream`` and
``HttpxUpstream``, so the setting ``UPSTREAM_CLIENT`` can switch between them without a change
anyone would notice.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trustme
from aiohttp import web

from adapters.backend_client.aiohttp_upstream import AiohttpUpstream
from adapters.backend_client.httptools_upstream import HttptoolsUpstream
from adapters.backend_client.httpx_upstream import HttpxUpstream
from domain.errors import UpstreamBadAnswer, UpstreamTimeout, UpstreamUnavailable
from domain.ports import UpstreamRequest, UpstreamResponse
from tests.integration.conftest import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def http_server(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[str]:
    """A TCP server that reads a request, writes ``reply`` and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def whole_body(answer: UpstreamResponse) -> bytes:
    """The answer's body, its streamed rest included."""
    if answer.rest is None:
        return answer.body
    parts = [answer.body]
    parts.extend([chunk async for chunk in answer.rest])
    return b"".join(parts)


Adapter = HttptoolsUpstream | AiohttpUpstream | HttpxUpstream
UpstreamFor = Callable[..., AbstractAsyncContextManager[Adapter]]
ADAPTERS: dict[str, type[Adapter]] = {
    "httptools": HttptoolsUpstream,
    "aiohttp": AiohttpUpstream,
    "httpx": HttpxUpstream,
}


@pytest.fixture(params=list(ADAPTERS))
def upstream_for(request: pytest.FixtureRequest) -> UpstreamFor:
    """Opens the adapter under test on a URL; every test runs once per adapter."""
    kind = ADAPTERS[str(request.param)]

    @asynccontextmanager
    async def opened(
        url: str, pool_size: int = 4, ssl_context: ssl.SSLContext | None = None
    ) -> AsyncIterator[Adapter]:
        upstream = kind(url, pool_size=pool_size, ssl_context=ssl_context)
        await upstream.start()
        try:
            yield upstream
        finally:
            await upstream.aclose()

    return opened


async def test_cookies_set_for_one_request_are_never_sent_on_another(
    upstream_for: UpstreamFor,
) -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.Response(text="ok")
        response.set_cookie("session", f"user-{len(seen)}")
        return response

    async with http_server(handler) as url, upstream_for(url) as upstream:
        first = await upstream.send(UpstreamRequest("GET", "/a"), 2.0)
        await upstream.send(UpstreamRequest("GET", "/a"), 2.0)
        await upstream.send(UpstreamRequest("GET", "/a", headers=(("cookie", "mine=1"),)), 2.0)
    assert ("Set-Cookie", "session=user-1; Path=/") in first.headers
    assert seen == [None, None, "mine=1"]


async def test_method_path_query_headers_and_body_reach_the_upstream(
    upstream_for: UpstreamFor,
) -> None:
    received: dict[str, object] = {}

    async def handler(request: web.Request) -> web.Response:
        received.update(
            method=request.method,
            path=request.raw_path,
            header=request.headers.get("X-Thing"),
            body=await request.read(),
        )
        return web.Response(body=b"\x00\x01raw", status=201, headers={"X-Back": "1"})

    request = UpstreamRequest("POST", "/p", "a=1&b=%20", (("x-thing", "v"),), b"payload")
    async with http_server(handler) as url, upstream_for(url) as upstream:
        answer = await upstream.send(request, 2.0)
    assert received == {"method": "POST", "path": "/p?a=1&b=%20", "header": "v", "body": b"payload"}
    assert (answer.status, answer.body) == (201, b"\x00\x01raw")
    names = {name.lower() for name, _ in answer.headers}
    assert "x-back" in names
    assert not names & {"content-length", "transfer-encoding", "connection"}


async def test_slow_answer_is_a_timeout(upstream_for: UpstreamFor) -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    async with http_server(handler) as url, upstream_for(url) as upstream:
        with pytest.raises(UpstreamTimeout):
            await upstream.send(UpstreamRequest("GET", "/"), 0.2)


async def test_refused_connection_is_unavailable(upstream_for: UpstreamFor) -> None:
    async with upstream_for(f"http://127.0.0.1:{free_port()}") as upstream:
        with pytest.raises(UpstreamUnavailable):
            await upstream.send(UpstreamRequest("GET", "/"), 2.0)


@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a little", b""],
    ids=["closed-mid-body", "closed-at-once"],
)
async def test_dropped_answers_are_unavailable(reply: bytes, upstream_for: UpstreamFor) -> None:
    async with raw_server(reply) as url, upstream_for(url) as upstream:
        with pytest.raises(UpstreamUnavailable):
            await upstream.send(UpstreamRequest("GET", "/"), 2.0)


async def test_an_answer_that_is_not_http_is_a_bad_answer(upstream_for: UpstreamFor) -> None:
    async with raw_server(b"this is not http\r\n\r\n") as url, upstream_for(url) as upstream:
        with pytest.raises(UpstreamBadAnswer):
            await upstream.send(UpstreamRequest("GET", "/"), 2.0)


async def test_retry_after_of_a_failure_is_read_as_seconds(upstream_for: UpstreamFor) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "4"})

    async with http_server(handler) as url, upstream_for(url) as upstream:
        answer = await upstream.send(UpstreamRequest("GET", "/"), 2.0)
    assert (answer.status, answer.retry_after_seconds) == (503, 4.0)


@asynccontextmanager
async def scripted_server(
    answer: Callable[[bytes], bytes], close_after_each: bool = False
) -> AsyncIterator[tuple[str, list[int]]]:
    """A keep-alive HTTP/1.1 server: ``answer(request head)`` for each request.

    Yields its URL and a list with, per connection, how many requests it served; the most
    connections open at once is appended to ``PEAK_CONNECTIONS`` when it stops.
    """
    served: list[int] = []
    open_now = [0, 0]  # open now, most open at once

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(0)
        index = len(served) - 1
        open_now[0] += 1
        open_now[1] = max(open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                served[index] += 1
                writer.write(answer(head))
                await writer.drain()
                if close_after_each:
                    await asyncio.sleep(0.05)  # let the client put it back in its pool first
                    return
        finally:
            open_now[0] -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", served
    finally:
        server.close()
        PEAK_CONNECTIONS.append(open_now[1])


PEAK_CONNECTIONS: list[int] = []


def ok(body: bytes = b"fine") -> Callable[[bytes], bytes]:
    return lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_sequential_requests_share_one_kept_alive_connection(
    upstream_for: UpstreamFor,
) -> None:
    async with scripted_server(ok()) as (url, served), upstream_for(url) as upstream:
        answers = [await upstream.send(UpstreamRequest("GET", "/"), 2.0) for _ in range(5)]
    assert [a.body for a in answers] == [b"fine"] * 5
    assert served == [5]


async def test_a_pooled_connection_the_upstream_closed_is_replaced_not_failed(
    upstream_for: UpstreamFor,
) -> None:
    async with (
        scripted_server(ok(), close_after_each=True) as (url, served),
        upstream_for(url) as upstream,
    ):
        for _ in range(3):
            answer = await upstream.send(UpstreamRequest("GET", "/"), 2.0)
            assert answer.body == b"fine"
            await asyncio.sleep(0.1)  # the server has hung up on the pooled connection
    assert served == [1, 1, 1]


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n",
         b"abcdef"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", b"until the end"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
    ids=["chunked", "until-close", "no-content"],
)  # fmt: skip
async def test_every_way_of_ending_a_body_is_read(
    reply: bytes, body: bytes, upstream_for: UpstreamFor
) -> None:
    async with raw_server(reply) as url, upstream_for(url) as upstream:
        answer = await upstream.send(UpstreamRequest("GET", "/"), 2.0)
    assert answer.body == body
    assert not {name.lower() for name, _ in answer.headers} & {"transfer-encoding", "connection"}


async def test_a_head_answer_has_no_body_even_with_a_length(upstream_for: UpstreamFor) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Thing: 1\r\n\r\n"
    async with scripted_server(lambda head: reply) as (url, _), upstream_for(url) as upstream:
        answer = await upstream.send(UpstreamRequest("HEAD", "/"), 2.0)
        again = await upstream.send(UpstreamRequest("HEAD", "/"), 2.0)
    assert (answer.status, answer.body, again.status) == (200, b"", 200)
    assert ("X-Thing", "1") in answer.headers


async def test_many_concurrent_requests_use_at_most_the_pool_size(
    upstream_for: UpstreamFor,
) -> None:
    PEAK_CONNECTIONS.clear()
    async with (
        scripted_server(ok(b"x" * 70_000)) as (url, served),
        upstream_for(url, pool_size=3) as upstream,
    ):

        async def fetch() -> bytes:
            return await whole_body(await upstream.send(UpstreamRequest("GET", "/"), 5.0))

        bodies = await asyncio.gather(*(fetch() for _ in range(60)))
    assert all(body == b"x" * 70_000 for body in bodies)
    assert sum(served) == 60
    assert len(served) <= 3
    assert len(PEAK_CONNECTIONS) == 1
    assert PEAK_CONNECTIONS[0] <= 3


async def test_https_is_verified_against_the_given_authority(upstream_for: UpstreamFor) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Host"))
        return web.Response(text="secret")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context).start()
    url = f"https://localhost:{port}"
    try:
        async with upstream_for(url, ssl_context=trusting) as upstream:
            answer = await upstream.send(UpstreamRequest("GET", "/s"), 5.0)
        async with upstream_for(url) as untrusting:  # the system's CAs do not know this one
            with pytest.raises(UpstreamUnavailable):
                await untrusting.send(UpstreamRequest("GET", "/s"), 5.0)
    finally:
        await runner.cleanup()
    assert (answer.status, answer.body) == (200, b"secret")
    assert seen == [f"localhost:{port}"]
