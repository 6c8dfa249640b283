"""Clients that attack the gateway, over real sockets, against a real gateway process.

Endless and oversized bodies, slow heads and bodies, silent sockets by the thousand, forged
forwarding headers, ``Connection`` lists that try to strip what the gateway adds, a trailing
slash and a protocol upgrade. The upstream is ``hostile_upstream`` in its ``echo`` and ``count``
cases, so every test can see exactly what was (or was not) forwarded.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.http.server import LINGER_SECONDS
from tests.integration.conftest import Service, service
from tests.integration.test_hostile_upstream import RSS_MARGIN, rss_bytes

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
PROBLEM = "application/problem+json"


@contextlib.contextmanager
def gateway_process(
    upstream: str, tmp_path: Path, preexec_fn: Callable[[], None] | None = None, **env: str
) -> Iterator[Service]:
    settings = {
        "BACKEND_URL": upstream,
        "CLIENT_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "CLIENT_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    with service("resilient-gateway", settings, tmp_path, preexec_fn=preexec_fn) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def gateway(hostile_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with gateway_process(hostile_upstream, tmp_path_factory.mktemp("gateway")) as gateway:
        yield gateway


def received(upstream: str) -> dict[str, int]:
    return dict(httpx.get(f"{upstream}/?case=count").json())


def connect(gateway: Service) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_answer(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the gateway sent until it closed, and whether it did close."""
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        return bytes(data), False
    return bytes(data), True


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def problem_of(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower()
    return dict(json.loads(body))


# --- bodies ------------------------------------------------------------------------------------


def test_a_declared_body_over_the_limit_is_refused_at_once_and_never_forwarded(
    gateway: Service, hostile_upstream: str
) -> None:
    before = received(hostile_upstream)
    sock = connect(gateway)
    sock.sendall(
        b"GET /api/v1/data?case=echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 209715200\r\n\r\n"
    )
    answer, closed = read_answer(sock)  # not one byte of the 200 MB was sent
    sock.close()
    assert status_of(answer) == 413
    assert problem_of(answer)["limit"] == 10 * MiB
    assert closed
    assert received(hostile_upstream) == before


def test_an_endless_chunked_upload_is_cut_at_the_limit_with_bounded_memory(
    gateway: Service, hostile_upstream: str
) -> None:
    before = received(hostile_upstream)
    baseline = rss_bytes(gateway.process.pid)
    sock = connect(gateway)
    sock.sendall(
        b"GET /api/v1/data?case=echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"10000\r\n" + b"u" * 0x10000 + b"\r\n"
    sent = 0
    peak = 0
    with contextlib.suppress(OSError):
        while sent < 400 * MiB:  # far past the limit; the gateway hangs up long before
            sock.sendall(chunk)
            sent += 0x10000
            if sent % (4 * MiB) == 0:
                peak = max(peak, rss_bytes(gateway.process.pid))
    answer, _ = read_answer(sock)
    sock.close()
    assert sent < 200 * MiB
    assert status_of(answer) == 413
    assert peak - baseline < RSS_MARGIN
    assert received(hostile_upstream) == before


def test_a_body_within_the_limit_is_forwarded_whole(gateway: Service) -> None:
    answer = httpx.request(
        "GET", f"{gateway.url}/api/v1/data", params={"case": "echo"}, content=b"b" * MiB
    )
    assert answer.status_code == 200
    assert answer.json()["body_length"] == MiB


# --- slow and silent clients ---------------------------------------------------------------


def seconds_until_closed(sock: socket.socket) -> tuple[float, bytes]:
    started = time.monotonic()
    answer, closed = read_answer(sock)
    assert closed
    return time.monotonic() - started, answer


def test_a_slowloris_head_gets_a_408_within_the_timeout(gateway: Service) -> None:
    sock = connect(gateway)
    started = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /api/v1/data HTTP/1.1\r\n")
            while not stop.wait(0.3):
                sock.sendall(b"X")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    _, answer = seconds_until_closed(sock)
    stop.set()
    thread.join()
    sock.close()
    assert time.monotonic() - started < HEADER_TIMEOUT + 1
    assert status_of(answer) == 408
    assert problem_of(answer)["type"].endswith(":request-timeout")


def test_a_stalled_body_gets_a_408_within_the_timeout(
    gateway: Service, hostile_upstream: str
) -> None:
    before = received(hostile_upstream)
    sock = connect(gateway)
    sock.sendall(
        b"GET /api/v1/data?case=echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n"
        + b"0123456789"
    )
    elapsed, answer = seconds_until_closed(sock)
    sock.close()
    assert BODY_TIMEOUT - 0.5 < elapsed < BODY_TIMEOUT + 1
    assert status_of(answer) == 408
    assert received(hostile_upstream) == before


def test_a_silent_connection_is_closed_quietly_within_the_timeout(gateway: Service) -> None:
    sock = connect(gateway)
    elapsed, answer = seconds_until_closed(sock)
    sock.close()
    assert HEADER_TIMEOUT - 0.5 < elapsed < HEADER_TIMEOUT + 1
    assert answer == b""


def limit_open_files(soft: int, hard: int | None = None) -> Callable[[], None]:
    def apply() -> None:
        current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, current_hard if hard is None else hard))

    return apply


def open_silent_sockets(gateway: Service, count: int) -> list[socket.socket]:
    return [connect(gateway) for _ in range(count)]


def test_1100_silent_sockets_at_a_soft_limit_of_1024_leave_health_answering(
    hostile_upstream: str, tmp_path: Path
) -> None:
    with gateway_process(
        hostile_upstream,
        tmp_path,
        limit_open_files(1024),
        CLIENT_HEADER_TIMEOUT_SECONDS="30",
        LOG_LEVEL="INFO",
    ) as gateway:
        sockets = open_silent_sockets(gateway, 1100)
        try:
            health = httpx.get(f"{gateway.url}/health", timeout=5)
        finally:
            for sock in sockets:
                sock.close()
        log = gateway.log()
    assert health.status_code == 200
    assert '"soft_limit_at_start":1024' in log
    assert '"soft_limit":1024' not in log


def test_past_a_hard_limit_new_connections_are_refused_cleanly_and_clients_are_served(
    hostile_upstream: str, tmp_path: Path
) -> None:
    with gateway_process(
        hostile_upstream,
        tmp_path,
        limit_open_files(1024, 1024),
        CLIENT_HEADER_TIMEOUT_SECONDS="30",
        LOG_LEVEL="INFO",
    ) as gateway:
        with httpx.Client(timeout=5) as client:
            assert client.get(f"{gateway.url}/health").status_code == 200
            sockets = open_silent_sockets(gateway, 1100)
            time.sleep(LINGER_SECONDS + 0.3)  # the refused ones among them have been closed
            try:
                kept_alive = client.get(f"{gateway.url}/api/v1/data", params={"case": "ok"})
                refused = httpx.get(f"{gateway.url}/health", timeout=5)
            finally:
                for sock in sockets:
                    sock.close()
            time.sleep(0.5)
            recovered = httpx.get(f"{gateway.url}/health", timeout=5)
        log = gateway.log()
    assert kept_alive.status_code == 200
    assert refused.status_code == 503
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["type"].endswith(":too-many-connections")
    assert recovered.status_code == 200
    assert '"max_client_connections":860' in log


# --- headers -------------------------------------------------------------------------------


def echoed_headers(answer: httpx.Response) -> dict[str, str]:
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["headers"])


def test_connection_named_headers_are_removed_both_ways_but_never_the_gateways_own(
    gateway: Service,
) -> None:
    answer = httpx.get(
        f"{gateway.url}/api/v1/data",
        params={"case": "echo"},
        headers={
            "Connection": "keep-alive, X-Client-Secret, X-Request-ID, X-Forwarded-For",
            "X-Client-Secret": "from-client",
            "X-Request-ID": "my-request-1",
        },
    )
    seen = echoed_headers(answer)
    assert "x-client-secret" not in seen
    assert seen["x-request-id"] == "my-request-1"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert "x-upstream-secret" not in answer.headers  # the upstream named it in Connection
    assert answer.headers["x-request-id"] == "my-request-1"


def test_an_untrusted_clients_forwarding_headers_are_replaced_by_the_gateways(
    gateway: Service,
) -> None:
    answer = httpx.get(
        f"{gateway.url}/api/v1/data",
        params={"case": "echo"},
        headers={
            "Host": "api.example",
            "X-Forwarded-For": "198.51.100.7, 10.0.0.1",
            "Forwarded": "for=198.51.100.7;proto=https",
            "X-Real-IP": "198.51.100.7",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
        },
    )
    seen = echoed_headers(answer)
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-host"] == "api.example"
    assert seen["x-forwarded-proto"] == "http"
    assert "forwarded" not in seen
    assert "x-real-ip" not in seen


def test_behind_trusted_proxies_only_the_trusted_chain_is_kept_and_capped(
    hostile_upstream: str, tmp_path: Path
) -> None:
    hops = ", ".join(f"10.0.{i // 250}.{i % 250 + 1}" for i in range(1000))
    with gateway_process(
        hostile_upstream, tmp_path, TRUSTED_PROXIES="127.0.0.0/8,10.0.0.0/8"
    ) as gateway:
        chained = httpx.get(
            f"{gateway.url}/api/v1/data",
            params={"case": "echo"},
            headers={"X-Forwarded-For": hops, "X-Forwarded-Proto": "https"},
        )
        forged = httpx.get(
            f"{gateway.url}/api/v1/data",
            params={"case": "echo"},
            headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.0.0.2"},
        )
    chain = echoed_headers(chained)["x-forwarded-for"].split(", ")
    assert len(chain) == 21  # 20 hops read from the header, then the peer
    assert chain[-1] == "127.0.0.1"
    assert echoed_headers(chained)["x-forwarded-proto"] == "https"  # a trusted proxy's word
    # the walk stops at the first hop no trusted proxy vouches for: 6.6.6.6 is dropped
    assert echoed_headers(forged)["x-forwarded-for"] == "203.0.113.9, 10.0.0.2, 127.0.0.1"


# --- small leaks ---------------------------------------------------------------------------


def test_a_trailing_slash_is_a_404_problem_never_a_redirect_built_from_host(
    gateway: Service,
) -> None:
    answer = httpx.get(f"{gateway.url}/api/v1/data/", headers={"Host": "evil.example"})
    assert answer.status_code == 404
    assert answer.headers["content-type"] == PROBLEM
    assert "location" not in answer.headers
    assert answer.headers["x-request-id"]


def test_a_websocket_upgrade_gets_a_problem_with_a_request_id(gateway: Service) -> None:
    answer = httpx.get(
        f"{gateway.url}/api/v1/data",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    assert answer.status_code == 501
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"].endswith(":upgrade-not-supported")
    assert answer.headers["x-request-id"]
