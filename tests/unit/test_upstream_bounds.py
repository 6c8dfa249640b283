"""The bounds on upstream answers, checked byte by byte (``ResponseGuard``, ``UpstreamLimits``)
and the hop-by-hop rule (``end_to_end``), without sockets."""

from __future__ import annotations

import pytest

from adapters.backend_client.guard import ResponseGuard
from adapters.backend_client.hop_by_hop import end_to_end
from adapters.backend_client.limits import UpstreamLimits
from domain.errors import UpstreamBadAnswer

LIMITS = UpstreamLimits(max_header_bytes=1024, max_headers=5, max_body_bytes=100)


def guard_after_request(head_request: bool = False) -> ResponseGuard:
    guard = ResponseGuard(LIMITS)
    guard.request_sent(head_request)
    return guard


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"HTTP/1.1 999 X\r\nContent-Length: 0\r\n\r\n", "outside 100-599"),
        (b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", "101"),
        (b"HTTP/1.1 102 P\r\n\r\n" * 6, "interim"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 6 + b"\r\n", "header fields"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 2000 + b"\r\n\r\n", "header section"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", "Content-Length 101"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + b"b" * 101, "body"),
    ],
    ids=["999", "101", "1xx-flood", "fields", "head-size", "length", "dup-length", "body"],
)
def test_a_breach_is_a_bad_answer(answer: bytes, reason: str) -> None:
    guard = guard_after_request()
    with pytest.raises(UpstreamBadAnswer, match=reason):
        guard.received(answer)


def test_a_few_interim_answers_and_a_good_answer_pass() -> None:
    guard = guard_after_request()
    guard.received(b"HTTP/1.1 100 Continue\r\n\r\n" * 5)
    guard.received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert guard.idle


def test_an_oversized_head_is_refused_before_the_rest_is_parsed() -> None:
    guard = guard_after_request()
    with pytest.raises(UpstreamBadAnswer, match="header section"):
        guard.received(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 10_000_000)


def test_each_answer_on_a_kept_alive_connection_is_checked_from_its_start() -> None:
    guard = guard_after_request()
    guard.received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    guard.request_sent(head_request=True)
    guard.received(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")  # HEAD: no body follows
    assert guard.idle
    guard.request_sent(head_request=False)
    with pytest.raises(UpstreamBadAnswer):
        guard.received(b"HTTP/1.1 999 X\r\n\r\n")


def test_trailers_are_not_header_fields() -> None:
    guard = guard_after_request()
    trailers = b"".join(b"X-T%d: 1\r\n" % i for i in range(10))
    guard.received(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + trailers + b"\r\n"
    )
    assert guard.idle


@pytest.mark.parametrize("value", ["-1", "1e3", " ", "12a"])
def test_a_malformed_content_length_is_refused(value: str) -> None:
    with pytest.raises(UpstreamBadAnswer):
        LIMITS.check_content_length(value)


def test_end_to_end_drops_hop_by_hop_and_connection_named_fields() -> None:
    headers = [
        ("Connection", "keep-alive, X-Secret"),
        ("Keep-Alive", "timeout=5"),
        ("x-secret", "s"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Type", "text/plain"),
    ]
    assert end_to_end(headers) == [("Content-Type", "text/plain")]
