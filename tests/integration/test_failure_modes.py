"""Tests that try to break the gateway, against real processes over real sockets."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import service

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def raw_request(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def running_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    logs = tmp_path_factory.mktemp("logs")
    backend_env = {"FLAKY_FAILURE_RATE": "0", "FLAKY_SLOW_RATE": "0"}
    with service("flaky-backend", backend_env, logs) as backend:
        env = {"BACKEND_URL": backend.url, "RATE_LIMIT_REQUESTS_PER_WINDOW": "100000"}
        with service("resilient-gateway", env, logs) as gateway:
            yield gateway.url, backend.url


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/no/such/path", {}, 404),
        ("DELETE", "/api/v1/data", {}, 405),
        ("PATCH", "/health", {}, 405),
        ("GET", "/api/v1/data", {"X-Forwarded-For": "1.1.1.1," * 12_000}, 431),
        ("GET", "/api/v1/data", {"X-Big": "a" * 70_000}, 431),
        ("GET", "/api/v1/data", {"X-Forwarded-For": "not, an, ip ,, [::1"}, 200),
        ("GET", "/api/v1/data?%zz=%%&a=%ff%fe&&=;", {}, 200),
    ],
    ids=["unknown-path", "wrong-method", "wrong-method-health", "enormous-xff",
         "oversized-header", "malformed-xff", "invalid-query"],
)  # fmt: skip
def test_bad_requests_get_a_clean_answer_with_a_json_body(
    running_pair: tuple[str, str], method: str, path: str, headers: dict[str, str], status: int
) -> None:
    gateway, _ = running_pair
    answer = httpx.request(method, gateway + path, headers=headers)
    assert answer.status_code == status
    answer.json()  # a JSON body (problem+json for the gateway's own errors)
    if status >= 400:
        assert answer.headers["content-type"] == PROBLEM


def test_many_small_headers_are_fine(running_pair: tuple[str, str]) -> None:
    gateway, _ = running_pair
    headers = {f"X-H{n}": "v" for n in range(300)}
    assert httpx.get(f"{gateway}/api/v1/data", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"BREW /api/v1/data HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/data HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n",
    ],
    ids=["unknown-method", "malformed-header", "tls-to-plain-port"],
)
def test_invalid_http_gets_a_problem_json_400(
    running_pair: tuple[str, str], request_bytes: bytes
) -> None:
    gateway, _ = running_pair
    answer = raw_request(gateway, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/problem+json" in head.lower()
    assert b'"status":400' in body


@contextmanager
def broken_backend(reply: bytes) -> Iterator[str]:
    """A TCP server that reads one request head, writes ``reply`` and hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\ncut short", b""],
    ids=["closed-mid-body", "closed-at-once"],
)
def test_broken_backend_answers_are_a_clean_503(tmp_path: Path, reply: bytes) -> None:
    with broken_backend(reply) as backend_url:
        env = {"BACKEND_URL": backend_url, "MAX_RETRIES": "1", "INITIAL_BACKOFF_SECONDS": "0.05"}
        with service("resilient-gateway", env, tmp_path) as gateway:
            answer = httpx.get(f"{gateway.url}/api/v1/data")
            health = httpx.get(f"{gateway.url}/health")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["reason"] == "connection_error"
    assert answer.json()["attempts"] == 2
    assert health.status_code == 200


def test_a_backend_answer_that_is_not_http_is_a_502_not_retried(tmp_path: Path) -> None:
    with broken_backend(b"complete garbage, not HTTP at all\r\n\r\n") as backend_url:
        env = {"BACKEND_URL": backend_url, "MAX_RETRIES": "1", "INITIAL_BACKOFF_SECONDS": "0.05"}
        with service("resilient-gateway", env, tmp_path) as gateway:
            answer = httpx.get(f"{gateway.url}/api/v1/data")
            health = httpx.get(f"{gateway.url}/health")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"].endswith(":upstream-bad-answer")
    assert answer.json()["attempts"] == 1
    assert health.status_code == 200


def test_sigterm_finishes_requests_in_flight_then_exits_0(
    pair: Callable[..., Any],
) -> None:
    with pair() as (gateway, backend):
        httpx.put(f"{backend.url}/chaos", json={"latency_seconds": 1.0})
        results: list[httpx.Response] = []
        client = threading.Thread(
            target=lambda: results.append(httpx.get(f"{gateway.url}/api/v1/data", timeout=10))
        )
        client.start()
        time.sleep(0.3)
        gateway.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{gateway.url}/health", timeout=1)
        client.join(timeout=10)
        exit_code = gateway.process.wait(timeout=15)
    assert [r.status_code for r in results] == [200]
    assert exit_code == 0
    assert "Application shutdown complete" in gateway.log()
