"""A byte-level guard on one upstream connection, for client libraries that offer no such bound.

httpcore (under httpx) parses answers with h11, which has no limit on interim ``1xx`` answers or
header fields, accepts any three-digit status, and reads a body of any length. ``ResponseGuard``
sees every byte the library will read, in front of it, with its own llhttp parser, and raises
``UpstreamBadAnswer`` before the library sees the bytes that break a bound: a header section
(interim answers included) over the limit is never handed on, an endless stream of ``102`` stops
after a few, a body stops at its limit. It knows where one answer ends, so a kept-alive
connection is checked answer by answer; the request that starts the next one is seen as it is
written (``request_sent``).
"""

from __future__ import annotations

import httptools

from adapters.backend_client.limits import UpstreamLimits
from domain.errors import UpstreamBadAnswer


class _Stop(Exception):
    """Raised in a parser callback to stop at a breach (kept on the guard)."""


class ResponseGuard:
    """Checks the answers on one HTTP/1.1 connection against ``limits``."""

    def __init__(self, limits: UpstreamLimits) -> None:
        self._limits = limits
        self._parser: httptools.HttpResponseParser | None = None
        self._head = False
        self._final_head = False
        self._done = True
        self._head_bytes = 0
        self._fields = 0
        self._interim = 0
        self._body_bytes = 0
        self._breach: UpstreamBadAnswer | None = None

    @property
    def idle(self) -> bool:
        """No answer is awaited: the next bytes written start a request."""
        return self._done

    def request_sent(self, head_request: bool) -> None:
        """A request went out: the next bytes read are its answer."""
        self._parser = httptools.HttpResponseParser(self)
        self._head = head_request
        self._final_head = False
        self._done = False
        self._head_bytes = 0
        self._fields = 0
        self._interim = 0
        self._body_bytes = 0

    def received(self, data: bytes) -> None:
        """Check bytes read from the upstream; raises ``UpstreamBadAnswer`` on a breach,
        bytes after a complete answer included (nobody asked for them)."""
        if not data:
            return
        if self._done:
            raise self._limits.trailing_bytes()
        if self._final_head:
            self._feed(data)
            return
        room = self._limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._feed(data)
            return
        self._head_bytes += room
        self._feed(data[:room])
        if not self._final_head and not self._done:
            raise self._limits.head_too_large()
        self._feed(data[room:])

    def _feed(self, data: bytes) -> None:
        if self._parser is None:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._done = True
            raise UpstreamBadAnswer(
                "the upstream switched protocols (101) without being asked"
            ) from None
        except httptools.HttpParserError as error:
            self._done = True
            breach, self._breach = self._breach, None
            if breach is not None:
                raise breach from None
            raise UpstreamBadAnswer(f"malformed answer: {error}") from None
        except _Stop:
            self._done = True
            breach, self._breach = self._breach, None
            assert breach is not None
            raise breach from None

    def _stop(self, breach: UpstreamBadAnswer) -> None:
        self._breach = breach
        raise _Stop

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._final_head:  # a second answer in the bytes of this one
            self._stop(self._limits.trailing_bytes())

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._final_head:
            return  # trailer fields: the client library drops them
        self._fields += 1
        if self._fields > self._limits.max_headers:
            self._stop(self._limits.too_many_headers())
        lowered = name.lower()
        try:
            if lowered == b"content-length":
                self._limits.check_content_length(value.decode("latin-1"))
            elif lowered == b"transfer-encoding":
                self._limits.check_transfer_encoding(value.decode("latin-1"))
        except UpstreamBadAnswer as error:
            self._stop(error)

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim += 1
            self._fields = 0
            if self._interim > self._limits.max_interim_answers:
                self._stop(self._limits.too_many_interim())
            return
        try:
            self._limits.check_status(status)
        except UpstreamBadAnswer as error:
            self._stop(error)
        self._final_head = True
        if self._head:
            self._done = True  # no body follows a HEAD answer, whatever its headers say

    def on_body(self, body: bytes) -> None:
        if self._done:  # a body after a HEAD answer
            self._stop(self._limits.trailing_bytes())
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body_bytes:
            self._stop(self._limits.body_too_large())

    def on_message_complete(self) -> None:
        if self._final_head:
            self._done = True
