"""An upstream that misbehaves on request, for the gateway's bounds: run as its own process.

    python -m tests.integration.hostile_upstream --port 9000

Each request's ``case`` query parameter picks the answer (see ``CASES``): huge, endless or
trickling bodies, a status of 999, an unrequested 101, a flood of ``102 Processing``, enormous
header sections, trailers, broken framing; ``echo`` reports the method, target, header fields
and body length it received as JSON, and ``count`` how many requests and body bytes reached it.
``events`` writes server-sent events slowly, each stamped with the monotonic time it was written.
A case that writes for ever stops when the gateway hangs up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

MiB = 1024 * 1024
Request = tuple[str, str, list[tuple[str, str]], bytes]
Case = Callable[[asyncio.StreamWriter, Request], Awaitable[bool]]


async def _forever(writer: asyncio.StreamWriter, block: bytes, pause: float = 0.0) -> bool:
    try:
        while True:
            writer.write(block)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
    except (ConnectionError, RuntimeError):
        return False


RECEIVED = {"requests": 0, "body_bytes": 0}


async def count(writer: asyncio.StreamWriter, request: Request) -> bool:
    """How many requests (before this one) and body bytes this process received."""
    payload = json.dumps(RECEIVED).encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
    return True


async def ok(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return True


async def echo(writer: asyncio.StreamWriter, request: Request) -> bool:
    method, target, headers, body = request
    report = {"method": method, "target": target, "headers": headers, "body_length": len(body)}
    payload = json.dumps(report).encode()
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"Connection: X-Upstream-Secret\r\nX-Upstream-Secret: from-upstream\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    return True


async def huge_declared(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
    return await _forever(writer, b"\0" * MiB)


async def large(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (48 * MiB))
    block = b"x" * MiB
    for _ in range(48):
        writer.write(block)
        await writer.drain()
    return True


async def endless_chunked(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    return await _forever(writer, b"10000\r\n" + b"y" * 0x10000 + b"\r\n")


async def endless_until_close(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    return await _forever(writer, b"z" * 0x10000)


async def trickle_head(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\n")
    return await _forever(writer, b"X", pause=0.2)


async def trickle_body(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
    return await _forever(writer, b"b", pause=0.2)


async def status_999(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(b"HTTP/1.1 999 Whatever\r\nContent-Length: 2\r\n\r\nok")
    return True


async def switch_101(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        b"\x81\x05hello"
    )
    return False


async def flood_102(writer: asyncio.StreamWriter, request: Request) -> bool:
    return await _forever(writer, b"HTTP/1.1 102 Processing\r\n\r\n" * 2000)


async def many_headers(writer: asyncio.StreamWriter, request: Request) -> bool:
    fields = b"".join(b"X-Field-%d: v\r\n" % i for i in range(10_000))
    writer.write(b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 2\r\n\r\nok")
    return False


async def long_header(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * MiB + b"\r\nContent-Length: 2\r\n\r\nok")
    return False


async def trailers(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer-Secret\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Trailer-Secret: leaked\r\n\r\n"
    )
    return True


async def duplicate_length(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nokokok")
    return False


async def length_and_chunked(writer: asyncio.StreamWriter, request: Request) -> bool:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    return False


async def events(writer: asyncio.StreamWriter, request: Request) -> bool:
    """Server-sent events, as the query says: ``n`` events (3), each after ``gap`` seconds (0.3)
    and padded with ``size`` bytes (0), then ``hold`` seconds of silence (0) before the end;
    ``framing`` ``chunked`` (kept alive) or ``close`` (ends when the connection does); ``type``
    the Content-Type (``text/event-stream``). Each event's data is ``<i> <time.monotonic()>`` as
    it was written (one clock for every process on the machine), so a reader can tell when it
    got each event against when the next was sent."""
    method, target, _, _ = request
    query = parse_qs(urlsplit(target).query)

    def param(name: str, default: str) -> str:
        return query.get(name, [default])[0]

    count, gap, size = int(param("n", "3")), float(param("gap", "0.3")), int(param("size", "0"))
    hold, chunked = float(param("hold", "0")), param("framing", "chunked") == "chunked"
    framing = b"Transfer-Encoding: chunked" if chunked else b"Connection: close"
    content_type = param("type", "text/event-stream").encode("latin-1")
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n%s\r\n\r\n"
        % (content_type, framing)
    )
    if method == "HEAD":
        return chunked
    try:
        await writer.drain()
        for i in range(1, count + 1):
            await asyncio.sleep(gap)
            event = b"data: %d %.6f %s\n\n" % (i, time.monotonic(), b"x" * size)
            writer.write(b"%x\r\n%s\r\n" % (len(event), event) if chunked else event)
            await writer.drain()
        await asyncio.sleep(hold)
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, RuntimeError):
        return False
    return chunked


CASES: dict[str, Case] = {
    "count": count,
    "ok": ok,
    "echo": echo,
    "huge-declared": huge_declared,
    "large": large,
    "endless-chunked": endless_chunked,
    "endless-until-close": endless_until_close,
    "trickle-head": trickle_head,
    "trickle-body": trickle_body,
    "status-999": status_999,
    "switch-101": switch_101,
    "flood-102": flood_102,
    "many-headers": many_headers,
    "long-header": long_header,
    "trailers": trailers,
    "duplicate-length": duplicate_length,
    "length-and-chunked": length_and_chunked,
    "events": events,
}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *fields = head.decode("latin-1").split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = [
                (name.strip().lower(), value.strip())
                for name, _, value in (f.partition(":") for f in fields if f)
            ]
            length = int(dict(headers).get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            case = parse_qs(urlsplit(target).query).get("case", ["ok"])[0]
            if case != "count":
                RECEIVED["requests"] += 1
                RECEIVED["body_bytes"] += len(body)
            keep = await CASES[case](writer, (method, target, headers, body))
            await writer.drain()
            if not keep:
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=1024 * 1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))
