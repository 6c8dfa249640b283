"""Event streams and the preserved Host, through each upstream adapter, against real sockets.

The upstream is ``hostile_upstream`` in its own process (case ``events``): each event carries the
``time.monotonic()`` at which it was written, one clock for every process on the machine, so the
test can tell that an event reached the reader before the next one was even sent, rather than
trusting its own timing alone. Every test runs once per adapter.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trustme

from adapters.backend_client.aiohttp_upstream import AiohttpUpstream
from adapters.backend_client.httptools_upstream import HttptoolsUpstream
from adapters.backend_client.httpx_upstream import HttpxUpstream
from adapters.backend_client.limits import UpstreamLimits
from domain.errors import UpstreamBadAnswer, UpstreamTimeout
from domain.ports import UpstreamRequest, UpstreamResponse

Adapter = HttptoolsUpstream | AiohttpUpstream | HttpxUpstream
ADAPTERS: dict[str, type[Adapter]] = {
    "httptools": HttptoolsUpstream,
    "aiohttp": AiohttpUpstream,
    "httpx": HttpxUpstream,
}


class Opener:
    """Opens the adapter under test on a URL, with the given limits."""

    def __init__(self, kind: type[Adapter]) -> None:
        self.kind = kind

    @asynccontextmanager
    async def __call__(
        self, url: str, ssl_context: ssl.SSLContext | None = None, **limits: Any
    ) -> AsyncIterator[Adapter]:
        upstream = self.kind(
            url, pool_size=4, ssl_context=ssl_context, limits=UpstreamLimits(**limits)
        )
        await upstream.start()
        try:
            yield upstream
        finally:
            await upstream.aclose()


@pytest.fixture(params=list(ADAPTERS))
def upstream_for(request: pytest.FixtureRequest) -> Opener:
    return Opener(ADAPTERS[str(request.param)])


def events(**query: object) -> UpstreamRequest:
    return UpstreamRequest(
        "GET", "/sse", "&".join(f"{k}={v}" for k, v in {"case": "events", **query}.items())
    )


Pieces = list[tuple[float, bytes]]


async def read_pieces(answer: UpstreamResponse, returned: float) -> Pieces:
    """Each non-empty piece of the body with the monotonic time it reached the reader."""
    pieces = [(returned, answer.body)] if answer.body else []
    assert answer.rest is not None
    pieces.extend([(time.monotonic(), chunk) async for chunk in answer.rest])
    return pieces


def parse(body: bytes) -> list[tuple[int, float]]:
    """The number of each event in ``body`` and when it was written (``data: <i> <time>``)."""
    events = [event.split() for event in body.split(b"\n\n") if event]
    return [(int(event[1]), float(event[2])) for event in events]


def sent_times(body: bytes) -> list[float]:
    """When each event of a whole body was written, checking none is missing."""
    events = parse(body)
    assert [number for number, _ in events] == list(range(1, len(events) + 1))
    return [at for _, at in events]


@pytest.mark.parametrize(
    ("content_type", "framing"),
    [("text/event-stream", "chunked"), ("Text/Event-Stream;%20charset=utf-8", "close")],
    ids=["chunked", "case-params-until-close"],
)
async def test_events_pass_one_by_one_as_they_are_written(
    upstream_for: Opener, hostile_upstream: str, content_type: str, framing: str
) -> None:
    # The attempt's timeout (0.2 s) is shorter than the gaps (0.3 s): it bounds the head only.
    async with upstream_for(hostile_upstream, stream_idle_timeout_seconds=2.0) as upstream:
        started = time.monotonic()
        answer = await upstream.send(events(type=content_type, framing=framing), 0.2)
        returned = time.monotonic()
        pieces = await read_pieces(answer, returned)
    assert answer.status == 200
    sent = sent_times(b"".join(piece for _, piece in pieces))
    assert len(sent) == 3
    # Handed over at the head, before the first event was written (0.3 s after it).
    assert returned < sent[0], (returned - started, sent[0] - started)
    assert answer.body == b""
    # Three pieces, one event each, each read before the next was written.
    assert [parse(piece) for _, piece in pieces] == [[(i + 1, s)] for i, s in enumerate(sent)]
    arrived = [at for at, _ in pieces]
    assert arrived[0] < sent[1]
    assert arrived[1] < sent[2]
    # The gaps survive: nothing was held back and released in a burst.
    assert arrived[1] - arrived[0] > 0.2
    assert arrived[2] - arrived[1] > 0.2


async def test_a_stream_of_another_type_is_still_buffered_whole(
    upstream_for: Opener, hostile_upstream: str
) -> None:
    async with upstream_for(hostile_upstream) as upstream:
        started = time.monotonic()
        answer = await upstream.send(events(type="text/plain"), 5.0)
        returned = time.monotonic()
    assert answer.rest is None
    sent = sent_times(answer.body)
    assert len(sent) == 3
    assert returned > sent[2] > started


async def test_an_event_stream_silent_too_long_is_cut(
    upstream_for: Opener, hostile_upstream: str
) -> None:
    # The attempt's timeout (5 s) does not bound the silence: the stream's idle timeout does.
    async with upstream_for(hostile_upstream, stream_idle_timeout_seconds=0.3) as upstream:
        answer = await upstream.send(events(n=1, gap=0, hold=5), 5.0)
        assert answer.rest is not None
        received = bytearray(answer.body)
        last = time.monotonic()

        async def read_all() -> None:
            nonlocal last
            async for chunk in answer.rest:  # type: ignore[union-attr]
                received.extend(chunk)
                last = time.monotonic()

        with pytest.raises(UpstreamTimeout):
            await read_all()
        cut_at = time.monotonic()
    assert len(sent_times(bytes(received))) == 1
    assert 0.25 < cut_at - last < 2.0


async def test_an_event_stream_over_the_body_limit_is_cut(
    upstream_for: Opener, hostile_upstream: str
) -> None:
    async with upstream_for(hostile_upstream, max_body_bytes=2000) as upstream:
        answer = await upstream.send(events(n=1000, gap=0.02, size=300), 2.0)
        assert answer.rest is not None
        pieces = [answer.body] if answer.body else []

        async def read_all() -> None:
            async for chunk in answer.rest:  # type: ignore[union-attr]
                pieces.append(chunk)  # noqa: PERF401  # one by one: those before the cut count

        with pytest.raises(UpstreamBadAnswer, match="over the limit"):
            await read_all()
    assert sum(map(len, pieces)) <= 2000
    assert len(pieces) >= 2  # streamed as it came, until the bound


async def test_a_head_answer_of_an_event_stream_has_no_body(
    upstream_for: Opener, hostile_upstream: str
) -> None:
    async with upstream_for(hostile_upstream) as upstream:
        request = UpstreamRequest("HEAD", "/sse", "case=events")
        answer = await upstream.send(request, 2.0)
        again = await upstream.send(request, 2.0)
    assert (answer.status, answer.body, answer.rest) == (200, b"", None)
    assert again.status == 200


async def echoed_hosts(upstream: Adapter, headers: tuple[tuple[str, str], ...]) -> list[str]:
    answer = await upstream.send(UpstreamRequest("GET", "/h", "case=echo", headers), 2.0)
    fields = json.loads(answer.body)["headers"]
    assert ["x-thing", "1"] in fields
    return [value for name, value in fields if name == "host"]


async def test_a_host_field_first_is_the_only_host_sent(
    upstream_for: Opener, hostile_upstream: str
) -> None:
    async with upstream_for(hostile_upstream) as upstream:
        given = await echoed_hosts(upstream, (("host", "client.example"), ("x-thing", "1")))
        own = await echoed_hosts(upstream, (("x-thing", "1"),))
    assert given == ["client.example"]
    assert own == [hostile_upstream.removeprefix("http://")]


@asynccontextmanager
async def tls_echo_server(context: ssl.SSLContext) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An HTTPS server for ``localhost`` that keeps each request head it reads."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://localhost:{port}", heads
    finally:
        server.close()


async def test_a_preserved_host_does_not_change_whom_tls_verifies(upstream_for: Opener) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    async with (
        tls_echo_server(server_context) as (url, heads),
        upstream_for(url, ssl_context=trusting) as upstream,
    ):
        request = UpstreamRequest("GET", "/", headers=(("host", "client.example"),))
        answer = await upstream.send(request, 5.0)
    assert (answer.status, answer.body) == (200, b"ok")
    fields = [line.partition(":") for line in heads[0].decode("latin-1").split("\r\n")[1:]]
    assert [value.strip() for name, _, value in fields if name.lower() == "host"] == [
        "client.example"
    ]
