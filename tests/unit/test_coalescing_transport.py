"""The server's transport wrapper: writes of one turn of the loop leave as one, none is lost."""

from __future__ import annotations

import asyncio
from typing import Any

from adapters.http.server import COALESCE_MAX_BYTES, CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False
        self.buffered = 0

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.writes.append(data)
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def write_eof(self) -> None:
        self.events.append("eof")

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("203.0.113.9", 4000) if name == "peername" else default


async def next_turn() -> None:
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


def wrapped() -> tuple[CoalescingTransport, RecordingTransport]:
    real = RecordingTransport()
    return CoalescingTransport(real, asyncio.get_running_loop()), real  # type: ignore[arg-type]


async def test_a_head_and_a_body_written_in_one_turn_leave_in_one_write() -> None:
    transport, real = wrapped()
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(bytearray(b"ok"))
    assert real.writes == []
    assert transport.get_write_buffer_size() == 40
    await next_turn()
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    assert transport.get_write_buffer_size() == 0


async def test_writes_of_later_turns_are_not_held_back() -> None:
    """An event stream's pieces go out as they come: each at the end of its own turn."""
    transport, real = wrapped()
    for piece in (b"head", b"event 1", b"event 2"):
        transport.write(piece)
        await next_turn()
    assert real.writes == [b"head", b"event 1", b"event 2"]


async def test_a_close_sends_what_is_held_first_and_an_abort_drops_it() -> None:
    transport, real = wrapped()
    transport.write(b"answer")
    transport.close()
    assert real.events == ["write", "close"]
    transport.write(b"too late")
    await next_turn()
    assert real.writes == [b"answer"]

    transport, real = wrapped()
    transport.write(b"dropped")
    transport.abort()
    await next_turn()
    assert (real.writes, real.events) == ([], ["abort"])


async def test_write_eof_sends_what_is_held_first() -> None:
    transport, real = wrapped()
    transport.write(b"answer")
    transport.write_eof()
    assert real.events == ["write", "eof"]


async def test_a_large_answer_is_not_held_whole() -> None:
    transport, real = wrapped()
    chunk = b"x" * (COALESCE_MAX_BYTES // 2)
    transport.write(chunk)
    assert real.writes == []
    transport.write(chunk)  # the bound reached: out at once
    assert real.writes == [chunk + chunk]
    transport.write(b"tail")
    await next_turn()
    assert real.writes == [chunk + chunk, b"tail"]


async def test_everything_else_is_the_real_transport_s() -> None:
    transport, real = wrapped()
    assert transport.get_extra_info("peername") == ("203.0.113.9", 4000)
    assert not transport.is_closing()
    real.buffered = 7
    transport.write(b"abc")
    assert transport.get_write_buffer_size() == 10
