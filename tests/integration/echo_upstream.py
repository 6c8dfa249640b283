"""A well-behaved upstream that reports what reached it, for the gateway's tests: its own process.

    python -m tests.integration.echo_upstream --port 9000 --name alpha

Where ``hostile_upstream`` breaks the rules, this one keeps them, so a test can see exactly what
the gateway forwarded: any path not listed below answers 200 with JSON naming this upstream and
giving the method, the raw path and query exactly as received (percent-encoding untouched), the
header fields in received order with their names as sent, and the body. ``?status=NNN`` picks the
status (200-599) and ``?retry_after=S`` adds ``Retry-After: S``, for the breaker and retry rules.

- ``/_count``: requests received before this one (``/_count`` and ``/_reset`` not counted), in
  all and by method; ``/_reset`` sets both to zero.
- ``/_big?mb=N``: N MiB of octets in 64 KiB writes, each drained, with ``Content-Length``.
- ``/_sse?events=N&interval=S``: N ``text/event-stream`` events, chunked, each drained at once
  and stamped with ``time.time()``, S seconds apart; for streaming without buffering.
- ``/health``: 200 ``ok``.

Connections are kept alive (the gateway pools them) unless the client asks otherwise;
httptools parses requests, so ``Content-Length`` and chunked bodies are both read. A peer that
hangs up mid-answer ends that connection quietly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs

import httptools

KiB = 1024
MiB = 1024 * KiB
BIG_WRITE = 64 * KiB


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    keep_alive: bool

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def param(self, name: str) -> str | None:
        values = parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else None


class BadRequest(Exception):
    """A query parameter this upstream cannot act on; answered with 400 and the reason."""


class _Collector:
    """httptools callbacks gathering each complete request; pipelined ones queue in order."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.complete: list[Request] = []
        self._url = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._body = bytearray()

    def on_message_begin(self) -> None:
        self._url = bytearray()
        self._headers = []
        self._body = bytearray()

    def on_url(self, url: bytes) -> None:
        self._url += url  # llhttp hands the target over in as many pieces as it arrived in

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.complete.append(
            Request(
                method=self.parser.get_method().decode("latin-1"),
                target=self._url.decode("latin-1"),
                headers=self._headers,
                body=bytes(self._body),
                keep_alive=self.parser.should_keep_alive(),
            )
        )


@dataclass
class EchoUpstream:
    """One upstream's name and what it has counted; one instance per process."""

    name: str
    by_method: Counter[str] = field(default_factory=Counter)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        collector = _Collector()
        try:
            while True:
                data = await reader.read(64 * KiB)
                if not data:
                    return
                upgrade = False
                try:
                    collector.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    upgrade = True  # the request itself is complete; no second protocol follows
                except httptools.HttpParserError:
                    writer.write(_head(400, [], 0, keep_alive=False))
                    await writer.drain()
                    return
                while collector.complete:
                    request = collector.complete.pop(0)
                    keep_alive = request.keep_alive and not upgrade
                    await self.answer(writer, request, keep_alive)
                    if not keep_alive:
                        return
        except ConnectionError:
            pass  # the peer hung up mid-answer
        finally:
            writer.close()

    async def answer(
        self, writer: asyncio.StreamWriter, request: Request, keep_alive: bool
    ) -> None:
        path = request.path
        if path not in ("/_count", "/_reset"):
            self.by_method[request.method] += 1
        try:
            if path == "/_count":
                report = {"requests": self.by_method.total(), "by_method": dict(self.by_method)}
                await _send(writer, request, 200, "application/json", _json(report), keep_alive)
            elif path == "/_reset":
                self.by_method.clear()
                await _send(writer, request, 200, "text/plain", b"reset", keep_alive)
            elif path == "/health":
                await _send(writer, request, 200, "text/plain", b"ok", keep_alive)
            elif path == "/_big":
                await _big(writer, request, keep_alive)
            elif path == "/_sse":
                await _sse(writer, request, keep_alive)
            else:
                await self.echo(writer, request, keep_alive)
        except BadRequest as error:
            await _send(writer, request, 400, "text/plain", str(error).encode(), keep_alive)

    async def echo(self, writer: asyncio.StreamWriter, request: Request, keep_alive: bool) -> None:
        status = _int_param(request, "status", 200)
        if not 200 <= status <= 599:
            raise BadRequest("status must be 200-599")
        extra = []
        retry_after = request.param("retry_after")
        if retry_after is not None:
            if "\r" in retry_after or "\n" in retry_after:
                raise BadRequest("retry_after must be one line")
            extra.append(("Retry-After", retry_after))
        report = {
            "upstream": self.name,
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "body": request.body.decode("latin-1"),
            "body_length": len(request.body),
        }
        await _send(writer, request, status, "application/json", _json(report), keep_alive, extra)


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _int_param(request: Request, name: str, default: int) -> int:
    value = request.param(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def _head(
    status: int,
    fields: list[tuple[str, str]],
    content_length: int | None,
    keep_alive: bool,
) -> bytes:
    """A response head; ``content_length=None`` means a chunked body follows."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in fields]
    if content_length is None:
        lines.append("Transfer-Encoding: chunked")
    elif status != 204:
        lines.append(f"Content-Length: {content_length}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(
    writer: asyncio.StreamWriter,
    request: Request,
    status: int,
    content_type: str,
    body: bytes,
    keep_alive: bool,
    extra: list[tuple[str, str]] | None = None,
) -> None:
    if status in (204, 304):
        body = b""  # these statuses never carry a body (RFC 9110 §15.3.5, §15.4.5)
    fields = [("Content-Type", content_type), *(extra or [])]
    writer.write(_head(status, fields, len(body), keep_alive))
    if request.method != "HEAD":
        writer.write(body)
    await writer.drain()


async def _big(writer: asyncio.StreamWriter, request: Request, keep_alive: bool) -> None:
    mb = _int_param(request, "mb", 1)
    if mb < 0:
        raise BadRequest("mb must not be negative")
    fields = [("Content-Type", "application/octet-stream")]
    writer.write(_head(200, fields, mb * MiB, keep_alive))
    await writer.drain()
    if request.method == "HEAD":
        return
    block = b"x" * BIG_WRITE
    for _ in range(mb * MiB // BIG_WRITE):
        writer.write(block)
        await writer.drain()  # raises ConnectionError once the peer has gone: stop there


async def _sse(writer: asyncio.StreamWriter, request: Request, keep_alive: bool) -> None:
    events = _int_param(request, "events", 3)
    try:
        interval = float(request.param("interval") or "0.1")
    except ValueError:
        raise BadRequest("interval must be a number") from None
    if events < 0 or not 0 <= interval <= 60:
        raise BadRequest("events must not be negative, interval must be 0-60 seconds")
    fields = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
    writer.write(_head(200, fields, None, keep_alive))
    await writer.drain()
    if request.method == "HEAD":
        return
    for i in range(events):
        if i:
            await asyncio.sleep(interval)
        event = b"data: %s\n\n" % _json({"i": i, "sent_at": time.time()})
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def serve(port: int, name: str) -> None:
    upstream = EchoUpstream(name)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    arguments = parser.parse_args()
    asyncio.run(serve(arguments.port, arguments.name))
