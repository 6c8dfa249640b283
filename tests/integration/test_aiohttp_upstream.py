"""The aiohttp upstream adapter against real sockets: errors become domain errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from adapters.backend_client.aiohttp_upstream import AiohttpUpstream
from domain.errors import UpstreamTimeout, UpstreamUnavailable
from domain.ports import UpstreamRequest
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


@asynccontextmanager
async def upstream_for(url: str) -> AsyncIterator[AiohttpUpstream]:
    upstream = AiohttpUpstream(url, pool_size=4)
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.aclose()


async def test_cookies_set_for_one_request_are_never_sent_on_another() -> None:
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


async def test_method_path_query_headers_and_body_reach_the_upstream() -> None:
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


async def test_slow_answer_is_a_timeout() -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    async with http_server(handler) as url, upstream_for(url) as upstream:
        with pytest.raises(UpstreamTimeout):
            await upstream.send(UpstreamRequest("GET", "/"), 0.2)


async def test_refused_connection_is_unavailable() -> None:
    async with upstream_for(f"http://127.0.0.1:{free_port()}") as upstream:
        with pytest.raises(UpstreamUnavailable):
            await upstream.send(UpstreamRequest("GET", "/"), 2.0)


@pytest.mark.parametrize(
    "reply",
    [
        b"this is not http\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a little",
        b"",
    ],
    ids=["garbage", "closed-mid-body", "closed-at-once"],
)
async def test_broken_answers_are_unavailable(reply: bytes) -> None:
    async with raw_server(reply) as url, upstream_for(url) as upstream:
        with pytest.raises(UpstreamUnavailable):
            await upstream.send(UpstreamRequest("GET", "/"), 2.0)


async def test_retry_after_of_a_failure_is_read_as_seconds() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "4"})

    async with http_server(handler) as url, upstream_for(url) as upstream:
        answer = await upstream.send(UpstreamRequest("GET", "/"), 2.0)
    assert (answer.status, answer.retry_after_seconds) == (503, 4.0)
