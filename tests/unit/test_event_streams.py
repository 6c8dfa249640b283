"""Event streams and the preserved Host, without sockets: what ``UpstreamLimits`` calls an event
stream, and the httptools adapter's connection fed bytes by hand (the other adapters, and the
timing, are tested against real sockets in ``tests/integration/test_event_streams_adapters.py``).
"""

from __future__ import annotations

import asyncio
import math

import pytest

from adapters.backend_client.httptools_upstream import HttptoolsUpstream, _Connection
from adapters.backend_client.limits import UpstreamLimits
from domain.errors import UpstreamBadAnswer
from domain.ports import UpstreamRequest


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/event-stream", True),
        ("Text/Event-Stream", True),
        ("text/event-stream; charset=utf-8", True),
        (" text/event-stream ;charset=utf-8", True),
        ("text/event-streams", False),
        ("text/event", False),
        ("text/plain", False),
        ("application/json; x=text/event-stream", False),
        ("", False),
    ],
)
def test_what_is_an_event_stream(value: str, expected: bool) -> None:
    assert UpstreamLimits.is_event_stream(value) is expected


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.nan])
def test_the_idle_timeout_of_a_stream_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="stream_idle_timeout_seconds"):
        UpstreamLimits(stream_idle_timeout_seconds=seconds)


def test_the_idle_timeout_of_a_stream_is_five_minutes_unless_told() -> None:
    assert UpstreamLimits().stream_idle_timeout_seconds == 300.0


def host_lines(head: bytes) -> list[bytes]:
    return [line for line in head.split(b"\r\n") if line.lower().startswith(b"host:")]


@pytest.mark.parametrize("name", ["host", "Host"])
def test_a_host_field_first_replaces_the_adapters_own(name: str) -> None:
    upstream = HttptoolsUpstream("http://backend.internal:8080/base")
    request = UpstreamRequest("GET", "/p", headers=((name, "client.example"), ("x-a", "1")))
    head = upstream._encode_head(request)
    assert host_lines(head) == [b"host: client.example"]
    assert head.startswith(b"GET /base/p HTTP/1.1\r\n")
    assert b"\r\nx-a: 1\r\n" in head


def test_without_a_host_field_first_the_host_is_the_urls() -> None:
    upstream = HttptoolsUpstream("http://backend.internal:8080")
    head = upstream._encode_head(UpstreamRequest("GET", "/p", headers=(("x-host", "no"),)))
    assert host_lines(head) == [b"host: backend.internal:8080"]


class Transport:
    """Enough of an ``asyncio.Transport`` for one connection fed by hand."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


REQUEST = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
EVENTS_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def connection(**limits: int) -> _Connection:
    opened = _Connection(UpstreamLimits(**limits))
    opened.connection_made(Transport())  # type: ignore[arg-type]
    return opened


async def exchange(opened: _Connection, *reads: bytes, head: bool = False) -> None:
    """Send the request and have the upstream's ``reads`` arrive, one by one, after it."""
    loop = asyncio.get_running_loop()
    for data in reads:
        loop.call_soon(opened.data_received, data)
    async with asyncio.timeout(5):  # only against a hang: each read is already queued
        await opened.exchange(b"HEAD / HTTP/1.1\r\n\r\n" if head else REQUEST, b"", head)


async def test_an_event_stream_is_handed_over_at_its_head() -> None:
    opened = connection()
    await exchange(opened, EVENTS_HEAD)  # the head alone: nothing of the body has come
    assert opened.streaming
    assert opened.take_answer()[:3] == (200, [("Content-Type", "text/event-stream")], b"")
    loop = asyncio.get_running_loop()
    for event in (b"data: 1\n\n", b"data: 2\n\n"):
        loop.call_soon(opened.data_received, b"%x\r\n%s\r\n" % (len(event), event))
        assert await opened.next_chunk(5.0) == event
    loop.call_soon(opened.data_received, b"0\r\n\r\n")
    assert await opened.next_chunk(5.0) is None
    assert opened.reusable


async def test_an_event_that_came_with_the_head_is_the_first_piece() -> None:
    opened = connection()
    await exchange(opened, EVENTS_HEAD + b"9\r\ndata: 1\n\n\r\n")
    assert opened.take_answer()[2] == b""
    assert await opened.next_chunk(5.0) == b"data: 1\n\n"


async def test_an_answer_of_another_type_is_held_until_it_is_whole() -> None:
    opened = connection()
    plain_head = EVENTS_HEAD.replace(b"text/event-stream", b"text/plain")
    await exchange(opened, plain_head, b"9\r\ndata: 1\n\n\r\n", b"9\r\ndata: 2\n\n\r\n0\r\n\r\n")
    assert not opened.streaming
    assert opened.take_answer()[2] == b"data: 1\n\ndata: 2\n\n"


async def test_the_same_reads_as_an_event_stream_are_not_held() -> None:
    opened = connection()
    await exchange(opened, EVENTS_HEAD, b"9\r\ndata: 1\n\n\r\n", b"9\r\ndata: 2\n\n\r\n0\r\n\r\n")
    assert opened.streaming
    assert opened.take_answer()[2] == b""
    assert await opened.next_chunk(5.0) == b"data: 1\n\ndata: 2\n\n"  # all that is here, at once
    assert await opened.next_chunk(5.0) is None


async def test_an_event_stream_over_the_body_limit_breaks_off() -> None:
    opened = connection(max_body_bytes=20)
    await exchange(opened, EVENTS_HEAD)
    loop = asyncio.get_running_loop()
    loop.call_soon(opened.data_received, b"10\r\ndata: 12345678\n\n\r\n")
    assert await opened.next_chunk(5.0) == b"data: 12345678\n\n"
    loop.call_soon(opened.data_received, b"10\r\ndata: 12345678\n\n\r\n")
    with pytest.raises(UpstreamBadAnswer, match="over the limit"):
        await opened.next_chunk(5.0)
    assert opened.closed


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_an_event_stream_without_a_body_is_not_streamed(status: bytes) -> None:
    opened = connection()
    await exchange(opened, b"HTTP/1.1 %s\r\nContent-Type: text/event-stream\r\n\r\n" % status)
    assert not opened.streaming
    assert opened.reusable


async def test_a_head_answer_of_an_event_stream_is_not_streamed() -> None:
    opened = connection()
    await exchange(opened, EVENTS_HEAD, head=True)
    assert not opened.streaming
    assert opened.take_answer()[2] == b""


async def test_an_interim_answer_of_the_type_does_not_make_the_final_one_a_stream() -> None:
    opened = connection()
    interim = b"HTTP/1.1 103 Early Hints\r\nContent-Type: text/event-stream\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    await exchange(opened, interim + final)
    assert not opened.streaming
    assert opened.take_answer()[2] == b"ok"
