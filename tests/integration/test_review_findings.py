"""What an adversarial review of the hardening (issue 11) found, each kept as a test of the rule.

Every test runs a real gateway process against a real upstream on loopback, once per upstream
client where the adapter matters. The docstrings tell what the gateway did before the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Service, free_port, service

pytestmark = pytest.mark.slow

ADAPTERS = ["httptools", "aiohttp", "httpx"]


@contextlib.contextmanager
def raw_upstream(answers: dict[str, bytes]) -> Iterator[str]:
    """An upstream on its own thread that writes ``answers[case]`` verbatim for ``?case=``."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1]
                case = target.partition(b"case=")[2].partition(b"&")[0].decode()
                answer = answers[case]
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError, KeyError):
            pass
        finally:
            writer.close()

    stop = loop.create_future()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        started.set()
        async with server:
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(5)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(5)


@contextlib.contextmanager
def gateway(upstream: str, tmp_path: Path, client: str, **env: str) -> Iterator[Service]:
    settings = {
        "BACKEND_URL": upstream,
        "UPSTREAM_CLIENT": client,
        "BACKEND_TIMEOUT_SECONDS": "1.0",
        "REQUEST_TIMEOUT_SECONDS": "2.0",
        "MAX_RETRIES": "0",
        "FAILURE_THRESHOLD": "10000",
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    with service("resilient-gateway", settings, tmp_path) as process:
        yield process


# Finding 1 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ADAPTERS)
def test_a_retry_after_that_is_a_non_ascii_digit_is_not_a_500(client: str, tmp_path: Path) -> None:
    """``Retry-After: \\xb2`` (superscript two in latin-1) passes ``str.isdigit()`` and then
    ``float()`` raises ValueError in ``parse_retry_after``: httptools and httpx give a 500,
    aiohttp (which decodes the value differently) a 503."""
    answers = {"busy": b"HTTP/1.1 503 Busy\r\nRetry-After: \xb2\r\nContent-Length: 2\r\n\r\nno"}
    with raw_upstream(answers) as upstream, gateway(upstream, tmp_path, client) as gw:
        answer = httpx.get(f"{gw.url}/api/v1/data", params={"case": "busy"}, timeout=10)
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"].endswith("upstream-unavailable")


def test_a_bad_retry_after_does_not_leak_an_httptools_pool_slot(tmp_path: Path) -> None:
    """Worse with httptools: ``take_answer()`` (which parses Retry-After) runs after the
    ``try`` that releases the pool slot on failure, so each such answer leaks a slot and
    leaves its connection in ``_in_use``. With UPSTREAM_POOL_SIZE=2, two such answers and every
    later request waits for a slot until its timeout (503 ``timeout``), for good."""
    answers = {
        "busy": b"HTTP/1.1 503 Busy\r\nRetry-After: \xb2\r\nContent-Length: 2\r\n\r\nno",
        "ok": b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal",
    }
    with (
        raw_upstream(answers) as upstream,
        gateway(upstream, tmp_path, "httptools", UPSTREAM_POOL_SIZE="2") as gw,
    ):
        for _ in range(2):  # a new connection each: the gateway closes one after a 500
            httpx.get(f"{gw.url}/api/v1/data", params={"case": "busy"}, timeout=10)
        answer = httpx.get(f"{gw.url}/api/v1/data", params={"case": "ok"}, timeout=10)
    assert (answer.status_code, answer.content) == (200, b"real"), answer.text


# Finding 2 ------------------------------------------------------------------------------------


def test_every_client_x_forwarded_header_is_dropped(hostile_upstream: str, tmp_path: Path) -> None:
    """Issue 11: "With an untrusted peer, drop the client's ``X-Forwarded-*``". Only a fixed
    list of names is dropped; ``X-Forwarded-Server``, ``-Scheme``, ``-Ssl`` and ``-Uri`` (used
    by common frameworks to decide scheme, host and URL) reach the backend as if true."""
    forged = {
        "X-Forwarded-Server": "evil.example",
        "X-Forwarded-Scheme": "https",
        "X-Forwarded-Ssl": "on",
        "X-Forwarded-Uri": "/admin",
    }
    with gateway(hostile_upstream, tmp_path, "httptools") as gw:
        answer = httpx.get(
            f"{gw.url}/api/v1/data", params={"case": "echo"}, headers=forged, timeout=10
        )
    received = {name for name, _ in answer.json()["headers"]}
    assert received & {name.lower() for name in forged} == set()


# Finding 3 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ADAPTERS)
def test_a_client_that_stops_reading_a_streamed_answer_does_not_hold_a_bulkhead_slot_for_ever(
    client: str, hostile_upstream: str, tmp_path: Path
) -> None:
    """A streamed answer keeps its bulkhead slot (and breaker permit) until the stream ends;
    sending to a client that never reads blocks in uvicorn's ``drain()`` with no timeout, so the
    slot is held as long as the client keeps its socket open. With the bulkhead's limit of such
    clients (default 100), every other client gets 503 ``upstream-saturated`` indefinitely;
    during a half-open probe the breaker stays half-open."""
    with gateway(
        hostile_upstream,
        tmp_path,
        client,
        MAX_CONCURRENT_UPSTREAM_REQUESTS="2",
        CLIENT_BODY_TIMEOUT_SECONDS="2",  # the longest a send to a client may stall
    ) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        stalled = []
        try:
            for _ in range(2):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /api/v1/data?case=large HTTP/1.1\r\nHost: gw\r\n\r\n")
                stalled.append(sock)
            # Three times the whole request's deadline (REQUEST_TIMEOUT_SECONDS=2).
            time.sleep(6.0)
            answer = httpx.get(f"{gw.url}/api/v1/data", params={"case": "ok"}, timeout=10)
        finally:
            for sock in stalled:
                sock.close()
    assert answer.status_code == 200, json.dumps(answer.json())


# Finding 4 ------------------------------------------------------------------------------------

DESYNC = {
    # One answer whose Content-Length ends early, followed by bytes that parse as a second one.
    "desync": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret",
    "ok": b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal",
}


@pytest.mark.parametrize("client", ADAPTERS)
def test_bytes_after_an_answer_never_reach_another_answer(client: str, tmp_path: Path) -> None:
    """An upstream that writes more than its answer's framing says (a second, unrequested
    answer) must not have those bytes served anywhere. httptools appends the extra answer's body
    to this one (the client gets ``oksecret``); httpx keeps the pooled connection and hands the
    leftover answer to the *next* request, which may be another client's (it gets ``secret``
    instead of its own ``real``). aiohttp passes: ``ok``, then ``real``."""
    with (
        raw_upstream(DESYNC) as upstream,
        gateway(upstream, tmp_path, client) as gw,
        httpx.Client(timeout=10) as http,
    ):
        first = http.get(f"{gw.url}/api/v1/data", params={"case": "desync"})
        following = [
            http.get(f"{gw.url}/api/v1/data", params={"case": "ok"}).content for _ in range(3)
        ]
    assert b"secret" not in first.content
    assert following == [b"real"] * 3


# Finding 5 ------------------------------------------------------------------------------------


def test_a_pipelined_request_is_not_cut_by_the_head_timer(
    hostile_upstream: str, tmp_path: Path
) -> None:
    """``on_response_complete`` re-arms the head timer even when uvicorn has just started a
    pipelined request from its queue; if that request takes longer than
    ``CLIENT_HEADER_TIMEOUT_SECONDS``, the timer finds no head bytes and closes the connection
    without a word, and the pipelined request's answer is lost. Here the second request takes
    ~2 s (the upstream's head never completes, BACKEND_TIMEOUT_SECONDS=2: a 503 problem) and the
    head timeout is 1 s."""
    with gateway(
        hostile_upstream,
        tmp_path,
        "httptools",
        CLIENT_HEADER_TIMEOUT_SECONDS="1",
        BACKEND_TIMEOUT_SECONDS="2",
        REQUEST_TIMEOUT_SECONDS="3",
    ) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"GET /api/v1/data?case=ok HTTP/1.1\r\nHost: gw\r\n\r\n"
                b"GET /api/v1/data?case=trickle-head HTTP/1.1\r\nHost: gw\r\n\r\n"
            )
            data = b""
            while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    status_lines = re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+", data)
    assert status_lines == [b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable"]


# Finding 6 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ADAPTERS)
def test_a_client_header_with_a_non_ascii_byte_is_a_400_problem_with_every_client(
    client: str, hostile_upstream: str, tmp_path: Path
) -> None:
    """``X-Name: caf\xe9`` (obs-text): httpx's ``build_request`` refused the non-ASCII value
    (a 500) and aiohttp re-encoded it as UTF-8 (the backend got ``caf\xc3\xa9``); only the
    httptools adapter forwarded the bytes as they came. The gateway now refuses such a field
    with a 400 problem before any adapter sees it, the same whichever client is configured."""
    with gateway(hostile_upstream, tmp_path, client) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"GET /api/v1/data?case=echo HTTP/1.1\r\nHost: gw\r\nX-Name: caf\xe9\r\n"
                b"Connection: close\r\n\r\n"
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), data[:300]
    assert b"application/problem+json" in head
    assert b"x-name" in body


# Finding 7 ------------------------------------------------------------------------------------


def test_many_small_pipelined_requests_in_one_read_are_all_answered(
    hostile_upstream: str, tmp_path: Path
) -> None:
    """The head limit (64 KiB) is applied to each ``data_received`` chunk, not to each head:
    2,500 pipelined ``GET /health`` of 33 bytes each (82 KB in one write) are cut at 64 KiB, the
    last head is taken for an oversized one, and the connection is closed with none of the
    ~1,900 complete requests answered."""
    count = 2500
    request = b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n"
    with gateway(hostile_upstream, tmp_path, "httptools") as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request * count)
            data = b""
            while data.count(b"HTTP/1.1 ") < count:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == count


# Finding 8 ------------------------------------------------------------------------------------


def test_a_slow_upload_does_not_hold_a_bulkhead_slot_beyond_any_deadline(
    hostile_upstream: str, tmp_path: Path
) -> None:
    """The body is read after admission, inside the attempt, with the bulkhead slot (and the
    breaker permit: in HALF_OPEN, the only probe) held. Only the gap between two reads is
    bounded (CLIENT_BODY_TIMEOUT_SECONDS) and the request's deadline starts when the body is
    in, so a client sending one byte per second keeps its slot for as long as its declared
    length lasts (10 MiB by default: ~4 months). Two such clients here (bulkhead of 2) lock
    every other client out with 503 ``upstream-saturated`` after 8 s, four times every
    configured time bound."""
    with gateway(
        hostile_upstream,
        tmp_path,
        "httptools",
        MAX_CONCURRENT_UPSTREAM_REQUESTS="2",
        CLIENT_BODY_TIMEOUT_SECONDS="2",
        CLIENT_HEADER_TIMEOUT_SECONDS="2",
    ) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        uploads = []
        try:
            for _ in range(2):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(
                    b"GET /api/v1/data?case=ok HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n"
                )
                uploads.append(sock)
            for _ in range(8):
                time.sleep(1.0)
                for sock in uploads:
                    with contextlib.suppress(OSError):  # the gateway hangs up on them: the fix
                        sock.sendall(b"a")
            answer = httpx.get(f"{gw.url}/api/v1/data", params={"case": "ok"}, timeout=10)
        finally:
            for sock in uploads:
                sock.close()
    assert answer.status_code == 200, answer.text


# Finding 9 ------------------------------------------------------------------------------------

FRAMING = {
    # A transfer coding other than chunked, ending at close (RFC 9112 §6.3 item 6).
    "gzip-until-close": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n"
    b"zzzz",
    # chunked applied twice, which RFC 9112 §6.1 forbids: duplicate framing.
    "chunked-twice": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
    b"2\r\nok\r\n0\r\n\r\n",
    # Lines ended by a bare LF.
    "bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    # One 10,000-byte field, well within MAX_UPSTREAM_HEADER_BYTES (64 KiB): aiohttp's
    # max_field_size is set to min(8190, limit), so aiohttp alone refuses it (502, with the
    # field's text quoted in the problem's detail).
    "field-of-10000-bytes": b"HTTP/1.1 200 OK\r\nX-Long: "
    + b"a" * 10_000
    + b"\r\nContent-Length: 2\r\n\r\nok",
}


@pytest.mark.parametrize("case", sorted(FRAMING))
def test_every_adapter_gives_the_same_answer_for_the_same_framing(
    case: str, tmp_path: Path
) -> None:
    """Issue 11: bounds and protocol rules "the same for both upstream adapters"; "malformed or
    duplicate framing headers: each is a bad upstream answer (502 problem)". Seen here:
    ``Transfer-Encoding: gzip`` is 503 (httptools), 200 ``zzzz`` (aiohttp), 502 (httpx);
    ``chunked, chunked`` is 200 for httptools and aiohttp, 502 for httpx; bare LF is 200 for
    aiohttp only; a 10,000-byte field is 502 for aiohttp only."""
    answers = {case: FRAMING[case]}
    statuses = {}
    with raw_upstream(answers) as upstream:
        for client in ADAPTERS:
            (tmp_path / client).mkdir()
            with gateway(upstream, tmp_path / client, client) as gw:
                answer = httpx.get(f"{gw.url}/api/v1/data", params={"case": case}, timeout=10)
                statuses[client] = answer.status_code
    assert len(set(statuses.values())) == 1, statuses
    if case == "chunked-twice":
        assert statuses["httptools"] == 502


# Finding 10 -----------------------------------------------------------------------------------


def test_a_refused_client_cannot_keep_uploading(hostile_upstream: str, tmp_path: Path) -> None:
    """Issue 11: "a refused client never gets to upload". A 429 (likewise 503 circuit-open or
    saturated) is sent without reading the body and without ``Connection: close``; uvicorn
    then parses and drops the rest of the body for as long as it keeps coming, with no limit:
    here 6 s of an endless chunked body (far past MAX_REQUEST_BODY_BYTES=1 MiB) on a connection
    that stays open."""
    with gateway(
        hostile_upstream,
        tmp_path,
        "httptools",
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_REQUESTS_PER_WINDOW="1",
        MAX_REQUEST_BODY_BYTES=str(1024 * 1024),
    ) as gw:
        assert httpx.get(f"{gw.url}/api/v1/data", params={"case": "ok"}).status_code == 200
        port = int(gw.url.rsplit(":", 1)[1])
        block = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
        sent = 0
        closed = False
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"GET /api/v1/data?case=ok HTTP/1.1\r\nHost: gw\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            started = time.monotonic()
            try:
                while time.monotonic() - started < 6.0:
                    sock.sendall(block)
                    sent += len(block)
                    time.sleep(0.02)
            except OSError:
                closed = True
            answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 429 ")
    assert closed, f"{sent} body bytes accepted after the 429"


# Finding 11 -----------------------------------------------------------------------------------


def test_the_client_sees_only_the_gateways_ratelimit_fields(tmp_path: Path) -> None:
    """The gateway appends its RateLimit fields to the upstream's, so an upstream's
    ``RateLimit-Remaining: 999999`` goes out first, next to the gateway's; a client reading the
    first value is told it has 999,999 requests left. The gateway owns these names on the way
    back as it owns ``X-Forwarded-*`` on the way in (``_NOT_PASSED_BACK``)."""
    answers = {
        "rl": b'HTTP/1.1 200 OK\r\nRateLimit-Remaining: 999999\r\nRateLimit: "x";r=999\r\n'
        b"Content-Length: 2\r\n\r\nok"
    }
    with (
        raw_upstream(answers) as upstream,
        gateway(upstream, tmp_path, "httptools", RATE_LIMIT_ENABLED="true") as gw,
    ):
        answer = httpx.get(f"{gw.url}/api/v1/data", params={"case": "rl"}, timeout=10)
    assert answer.headers.get_list("ratelimit-remaining") == ["99"]
    assert len(answer.headers.get_list("ratelimit")) == 1


# Finding 12 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ADAPTERS)
@pytest.mark.parametrize("size", [2, 200_000], ids=["held", "streamed"])
def test_a_control_character_in_an_upstream_field_is_a_502_not_an_empty_reply(
    client: str, size: int, tmp_path: Path
) -> None:
    """``X-V: a\\x7fb`` (DEL; likewise \\x01): httptools and httpx refuse it as a bad answer
    (502); aiohttp's parser accepts it, uvicorn's ``send`` then raises "Invalid HTTP header
    value" and the client gets an empty reply (the issue's status-999 crash, by another way)."""
    answers = {
        "del": b"HTTP/1.1 200 OK\r\nX-V: a\x7fb\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    }
    with raw_upstream(answers) as upstream, gateway(upstream, tmp_path, client) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /api/v1/data?case=del HTTP/1.1\r\nHost: gw\r\n\r\n")
            head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 502 "), head[:200]
