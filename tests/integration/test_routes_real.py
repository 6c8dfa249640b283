"""The route table (``GATEWAY_CONFIG``) served by a real gateway process to echo upstreams.

Every test writes its own YAML file into ``tmp_path``, starts ``resilient-gateway`` from the
venv's ``bin`` and echo upstreams (``tests/integration/echo_upstream.py``) as processes, and
talks to them over sockets. The echo reports exactly what reached it (method, raw path and
query, header fields, body) and counts requests (``/_count``), so each test can say what was
forwarded, and that nothing was when the gateway refused.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import yaml

from tests.integration.conftest import BIN, Service, echo_upstream, free_port, service

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PROBLEM = "application/problem+json"
NO_RETRY = {"max_retries": 0}


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def gateway(tmp_path: Path, config: dict[str, Any], **env: str) -> Iterator[tuple[Service, Path]]:
    """The gateway serving ``config`` from a file in ``tmp_path``; the file's path too."""
    path = write_config(tmp_path, config)
    with service("resilient-gateway", {"GATEWAY_CONFIG": str(path), **env}, tmp_path) as gw:
        yield gw, path


def closed_port_url() -> str:
    """An http URL where nothing listens: every connection is refused."""
    return f"http://127.0.0.1:{free_port()}"


def count(echo_url: str) -> int:
    return int(httpx.get(f"{echo_url}/_count").json()["requests"])


def metrics(gw: Service) -> dict[str, Any]:
    answer = httpx.get(f"{gw.url}/metrics")
    assert answer.status_code == 200
    return dict(answer.json())


def wait_for(check: Callable[[], bool], seconds: float) -> float:
    """Poll ``check`` until true; the seconds it took (fails after ``seconds``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not within {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - started


def header(report: dict[str, Any], name: str) -> list[str]:
    """Every value of the field ``name`` the echo received (names compared case-insensitively)."""
    return [value for key, value in report["headers"] if key.lower() == name]


def assert_problem(answer: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body = dict(answer.json())
    assert body["status"] == status
    assert body["type"].endswith(kind), body
    return body


@contextmanager
def raw_connection(url: str) -> Iterator[http.client.HTTPConnection]:
    """An ``http.client`` connection: it sends the request target exactly as given (no
    normalisation of ``..``, ``%2e`` or ``%7E``, which httpx and browsers would apply)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        yield connection
    finally:
        connection.close()


def raw_get(url: str, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    with raw_connection(url) as connection:
        connection.request(method, target)
        answer = connection.getresponse()
        body = answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body


def raw_exchange(url: str, *pieces: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``pieces`` as they are on a fresh socket, 0.1 s apart (so the server reads each on
    its own); the parsed answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        for index, piece in enumerate(pieces):
            if index:
                time.sleep(0.1)
            sock.sendall(piece)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        body = answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body


# --- 1. breakers per upstream -------------------------------------------------------------------


def test_breakers_are_per_upstream_and_shared_by_its_routes(tmp_path: Path) -> None:
    with echo_upstream("alive") as alive_url:
        config = {
            "upstreams": {
                "dead": {
                    "url": closed_port_url(),
                    "timeout_seconds": 1,
                    "circuit_breaker": {"failure_threshold": 2, "recovery_timeout_seconds": 60},
                },
                "alive": {"url": alive_url, "timeout_seconds": 1},
            },
            "routes": [
                {"name": "dead-a", "path_prefix": "/dead-a", "upstream": "dead", "retry": NO_RETRY},
                {"name": "dead-b", "path_prefix": "/dead-b", "upstream": "dead", "retry": NO_RETRY},
                {"name": "alive", "path_prefix": "/alive", "upstream": "alive"},
            ],
        }
        with gateway(tmp_path, config) as (gw, _), httpx.Client(base_url=gw.url) as client:
            failures = [client.get("/dead-a/x") for _ in range(2)]
            opened = client.get("/dead-a/x")
            through_b = client.get("/dead-b/y")  # route B's very first request
            alive = client.get("/alive/z")
            report = metrics(gw)
    for failure in failures:
        assert_problem(failure, 503, "upstream-unavailable")
    assert assert_problem(opened, 503, "circuit-open")["circuit_breaker_state"] == "OPEN"
    assert assert_problem(through_b, 503, "circuit-open")["circuit_breaker_state"] == "OPEN"
    assert alive.status_code == 200
    assert alive.json()["upstream"] == "alive"
    assert alive.json()["path"] == "/alive/z"
    upstreams = report["upstreams"]
    assert upstreams["dead"]["circuit_breaker_state"] == "OPEN"
    assert upstreams["alive"]["circuit_breaker_state"] == "CLOSED"
    assert sorted(upstreams["dead"]["routes"]) == ["dead-a", "dead-b"]
    assert upstreams["dead"]["circuit_breaker_transitions"] == {"CLOSED->OPEN": 1}
    assert upstreams["alive"]["circuit_breaker_transitions"] == {}
    assert report["circuit_breaker_state"] == "OPEN"  # the worst of any upstream
    assert report["routes"]["dead-b"]["circuit_breaker_rejections"] == 1


# --- 2. prefixes, rewriting, refusals -----------------------------------------------------------


def test_prefix_rewrite_keeps_the_rest_byte_for_byte(
    tmp_path: Path, echo_pair: tuple[str, str]
) -> None:
    alpha, _ = echo_pair
    config = {
        "upstreams": {"alpha": {"url": alpha}},
        "routes": [
            {
                "name": "users",
                "path_prefix": "/api/v1/users",
                "rewrite_prefix": "/users",
                "upstream": "alpha",
                "methods": ["GET", "POST"],
            },
            {"name": "strip", "path_prefix": "/strip", "rewrite_prefix": "", "upstream": "alpha"},
        ],
    }
    with gateway(tmp_path, config) as (gw, _):
        status, _, body = raw_get(gw.url, "/api/v1/users/7/%7Efoo%2Fbar?x=%20y&y=1")
        assert status == 200, body
        deep = json.loads(body)
        itself = httpx.get(f"{gw.url}/api/v1/users").json()
        _, _, body = raw_get(gw.url, "/api/v1/%75sers/7%7E")  # %75 is "u": the same prefix
        encoded = json.loads(body)
        stripped = httpx.get(f"{gw.url}/strip/7").json()
        stripped_root = httpx.get(f"{gw.url}/strip").json()
        not_a_segment = httpx.get(f"{gw.url}/api/v1/users-x")
        wrong_method = httpx.delete(f"{gw.url}/api/v1/users/7")
        reached = count(alpha)
        dotted = [
            raw_get(gw.url, target)
            for target in (
                "/api/v1/users/../admin",
                "/api/v1/users/%2e%2e/admin",
                "/api/v1/users/7/%2E%2E/%2e%2E/secret",
                "/strip/./x",
            )
        ]
        reached_after = count(alpha)
    assert deep["upstream"] == "alpha"
    assert deep["path"] == "/users/7/%7Efoo%2Fbar"
    assert deep["query"] == "x=%20y&y=1"
    assert header(deep, "x-forwarded-prefix") == ["/api/v1/users"]
    assert itself["path"] == "/users"
    assert encoded["path"] == "/users/7%7E"  # the prefix matched decoded, the rest kept as sent
    assert header(itself, "x-forwarded-prefix") == ["/api/v1/users"]
    assert stripped["path"] == "/7"
    assert header(stripped, "x-forwarded-prefix") == ["/strip"]
    assert stripped_root["path"] == "/"
    assert_problem(not_a_segment, 404, "not-found")
    assert_problem(wrong_method, 405, "method-not-allowed")
    assert {m.strip() for m in wrong_method.headers["allow"].split(",")} == {"GET", "POST"}
    assert reached == 5  # the five forwarded above; neither the 404 nor the 405 went on
    for status, headers, body in dotted:
        assert status == 400, body
        assert headers["content-type"].startswith(PROBLEM)
        assert json.loads(body)["type"].endswith("invalid-path")
    assert reached_after == reached  # no dot-segment path reached the upstream


def test_longest_prefix_wins(tmp_path: Path, echo_pair: tuple[str, str]) -> None:
    alpha, beta = echo_pair
    config = {
        "upstreams": {"alpha": {"url": alpha}, "beta": {"url": beta}},
        "routes": [  # the shorter prefix first: order in the file must not matter
            {"name": "api", "path_prefix": "/api", "upstream": "beta"},
            {
                "name": "users",
                "path_prefix": "/api/v1/users",
                "rewrite_prefix": "/users",
                "upstream": "alpha",
            },
        ],
    }
    with gateway(tmp_path, config) as (gw, _), httpx.Client(base_url=gw.url) as client:
        users = client.get("/api/v1/users/7").json()
        other = client.get("/api/v1/orders/7").json()
        neighbour = client.get("/api/v1/users-x").json()  # not below /api/v1/users
    assert (users["upstream"], users["path"]) == ("alpha", "/users/7")
    assert (other["upstream"], other["path"]) == ("beta", "/api/v1/orders/7")
    assert header(other, "x-forwarded-prefix") == []  # nothing rewritten, nothing to say
    assert (neighbour["upstream"], neighbour["path"]) == ("beta", "/api/v1/users-x")


# --- 3. methods, bodies, Host -------------------------------------------------------------------


def test_every_method_carries_its_body_and_host_is_the_routes_choice(
    tmp_path: Path, echo_pair: tuple[str, str]
) -> None:
    alpha, _ = echo_pair
    config = {
        "upstreams": {"alpha": {"url": alpha}},
        "routes": [
            {"name": "plain", "path_prefix": "/plain", "upstream": "alpha"},
            {"name": "kept", "path_prefix": "/kept", "upstream": "alpha", "preserve_host": True},
        ],
    }
    body = bytes(range(256)) * 40  # every octet, 10 KiB
    with gateway(tmp_path, config) as (gw, _), httpx.Client(base_url=gw.url) as client:
        sent = {
            method: client.request(method, f"/plain/{method.lower()}", content=body)
            for method in ("POST", "PUT", "PATCH", "DELETE")
        }
        plain = client.get("/plain/h", headers={"Host": "public.example:8443"}).json()
        kept = client.get("/kept/h", headers={"Host": "public.example:8443"}).json()
    for method, answer in sent.items():
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["method"] == method
        assert report["path"] == f"/plain/{method.lower()}"
        assert report["body"].encode("latin-1") == body
        assert report["body_length"] == len(body)
    assert header(plain, "host") == [urlsplit(alpha).netloc]
    assert header(plain, "x-forwarded-host") == ["public.example:8443"]
    assert header(kept, "host") == ["public.example:8443"]


# --- 4. rate limit by header --------------------------------------------------------------------

KEY_A = "sk_live_SECRET123"
KEY_B = "sk_live_OTHER456"
KEYED_LIMIT = {"key": "header:X-API-Key", "requests_per_window": 2, "window_seconds": 60}


def keyed_config(echo_url: str, **limit: object) -> dict[str, Any]:
    return {
        "upstreams": {"alpha": {"url": echo_url}},
        "routes": [
            {
                "name": "keyed",
                "path_prefix": "/keyed",
                "upstream": "alpha",
                "rate_limit": {**KEYED_LIMIT, **limit},
            }
        ],
    }


def request_lines(log: str, route: str) -> list[dict[str, Any]]:
    """The gateway's JSON request log lines of ``route``."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request" and line["route"] == route]


def test_rate_limit_by_header_counts_each_key_and_never_logs_it(
    tmp_path: Path, echo_pair: tuple[str, str]
) -> None:
    alpha, _ = echo_pair
    with gateway(tmp_path, keyed_config(alpha)) as (gw, _), httpx.Client(base_url=gw.url) as c:
        key_a = [c.get("/keyed", headers={"X-API-Key": KEY_A}) for _ in range(3)]
        key_b = c.get("/keyed", headers={"X-API-Key": KEY_B})
        by_ip = [c.get("/keyed") for _ in range(3)]
        key_b_again = c.get("/keyed", headers={"X-API-Key": KEY_B})
        key_like_ip = c.get("/keyed", headers={"X-API-Key": "127.0.0.1"})
        # A request's log line is written once its answer is sent: wait for the last one.
        wait_for(lambda: len(request_lines(gw.log(), "keyed")) == 9, 2.0)
        log = gw.log()
    assert [a.status_code for a in key_a] == [200, 200, 429]
    problem = assert_problem(key_a[2], 429, "quota-exceeded")
    assert problem["policy"] == "keyed"
    assert 1 <= int(key_a[2].headers["retry-after"]) <= 60
    assert key_b.status_code == 200
    assert [a.status_code for a in by_ip] == [200, 200, 429]
    assert key_b_again.status_code == 200  # the address's count is not the key's
    assert key_like_ip.status_code == 200  # nor is a key that spells the address
    assert len(request_lines(log, "keyed")) == 9  # every request logged...
    for secret in (KEY_A, KEY_B, "SECRET123", "OTHER456"):
        assert secret not in log  # ...and not one key as it was sent


@pytest.mark.redis
def test_rate_limit_by_header_in_redis_keys_names_the_route_not_the_key(
    tmp_path: Path, echo_pair: tuple[str, str], redis_url: str
) -> None:
    alpha, _ = echo_pair
    prefix = f"test-routes-{uuid.uuid4().hex}:"
    env = {
        "RATE_LIMIT_STORAGE_URL": redis_url,
        "RATE_LIMIT_KEY_PREFIX": prefix,
        "RATE_LIMIT_STORAGE_TIMEOUT_SECONDS": "2",
    }
    store = redis.Redis.from_url(redis_url)
    try:
        config = keyed_config(alpha, fail_open=False)  # a store failure shows as 503
        with gateway(tmp_path, config, **env) as (gw, _), httpx.Client(base_url=gw.url) as c:
            key_a = [c.get("/keyed", headers={"X-API-Key": KEY_A}).status_code for _ in range(3)]
            key_b = c.get("/keyed", headers={"X-API-Key": KEY_B}).status_code
            keys = [key.decode() for key in store.scan_iter(f"{prefix}*")]
            log = gw.log()
    finally:
        for key in store.scan_iter(f"{prefix}*"):
            store.delete(key)
        store.close()
    assert key_a == [200, 200, 429]
    assert key_b == 200
    assert len(keys) == 2, keys  # one per API key
    for key in keys:
        assert key.startswith(f"{prefix}keyed:"), key
        for secret in ("sk_live", "SECRET", "OTHER"):
            assert secret not in key, key
    for secret in (KEY_A, KEY_B):
        assert secret not in log


# --- 5. request bodies over the route's limit ---------------------------------------------------


def test_bodies_over_the_limit_get_413_and_are_not_forwarded(
    tmp_path: Path, echo_pair: tuple[str, str]
) -> None:
    alpha, _ = echo_pair
    config = {
        "upstreams": {"alpha": {"url": alpha}},
        "routes": [
            {
                "name": "small",
                "path_prefix": "/small",
                "upstream": "alpha",
                "max_request_body_bytes": 1000,
            }
        ],
    }
    head = b"POST /small/up HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"190\r\n" + b"y" * 400 + b"\r\n"  # 400 bytes: only the third is over the limit
    with gateway(tmp_path, config) as (gw, _):
        declared = httpx.post(f"{gw.url}/small/up", content=b"x" * 5000)
        chunked = raw_exchange(gw.url, head + chunk, chunk, chunk + b"0\r\n\r\n")
        reached = count(alpha)
        at_limit = httpx.post(f"{gw.url}/small/up", content=b"z" * 1000)
    assert declared.request.headers["content-length"] == "5000"
    assert assert_problem(declared, 413, "body-too-large")["limit"] == 1000
    status, headers, body = chunked
    assert status == 413, body
    assert headers["content-type"].startswith(PROBLEM)
    assert json.loads(body)["limit"] == 1000
    assert reached == 0
    assert at_limit.status_code == 200  # the limit itself is allowed, and does arrive
    assert at_limit.json()["body_length"] == 1000


# --- 6. a large answer streamed -----------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_a_200_mib_answer_streams_in_bounded_memory(
    tmp_path: Path, echo_pair: tuple[str, str]
) -> None:
    alpha, _ = echo_pair
    config = {
        "upstreams": {"files": {"url": alpha, "max_response_body_bytes": 300 * MiB}},
        "routes": [
            {"name": "files", "path_prefix": "/files", "rewrite_prefix": "", "upstream": "files"}
        ],
    }
    with gateway(tmp_path, config) as (gw, _), httpx.Client(timeout=30) as client:
        pid = gw.process.pid
        assert client.get(f"{gw.url}/files/_big", params={"mb": 2}).status_code == 200  # warm
        baseline = rss_bytes(pid)
        peak = baseline
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.01):
                peak = max(peak, rss_bytes(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        received = 0
        chunks = 0
        try:
            with client.stream("GET", f"{gw.url}/files/_big", params={"mb": 200}) as answer:
                status = answer.status_code
                for chunk in answer.iter_raw(64 * 1024):
                    received += len(chunk)
                    chunks += 1
        finally:
            stop.set()
            sampler.join()
        peak = max(peak, rss_bytes(pid))
    assert status == 200
    assert received == 200 * MiB
    assert chunks > 100  # read piece by piece, not as one buffer
    assert peak - baseline < 50 * MiB, f"RSS grew by {(peak - baseline) / MiB:.1f} MiB"


# --- 7. an event stream, event by event ---------------------------------------------------------


def test_an_event_stream_arrives_event_by_event_past_the_attempt_timeout(
    tmp_path: Path, echo_pair: tuple[str, str]
) -> None:
    alpha, _ = echo_pair
    config = {
        "upstreams": {"events": {"url": alpha, "timeout_seconds": 1}},
        "routes": [
            {"name": "events", "path_prefix": "/events", "rewrite_prefix": "", "upstream": "events"}
        ],
    }
    arrivals: list[tuple[float, dict[str, Any]]] = []
    with gateway(tmp_path, config) as (gw, _), httpx.Client(timeout=10) as client:
        url = f"{gw.url}/events/_sse"
        with client.stream("GET", url, params={"events": 4, "interval": 0.4}) as answer:
            status = answer.status_code
            content_type = answer.headers["content-type"]
            pending = b""
            for chunk in answer.iter_raw():
                pending += chunk
                while b"\n\n" in pending:
                    event, pending = pending.split(b"\n\n", 1)
                    assert event.startswith(b"data: ")
                    arrivals.append((time.time(), json.loads(event[len(b"data: ") :])))
    assert status == 200
    assert content_type.startswith("text/event-stream")
    assert [event["i"] for _, event in arrivals] == [0, 1, 2, 3]
    last_sent = arrivals[-1][1]["sent_at"]
    assert arrivals[0][0] < last_sent - 0.8  # the first was read before the last was written
    assert last_sent - arrivals[0][1]["sent_at"] > 1.0  # longer than the attempt's timeout
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap >= 0.2 for gap in gaps), gaps
    for arrived, sent in arrivals:
        assert arrived - sent["sent_at"] < 0.3  # each read before the next was written (0.4 s)


# --- 8. SIGHUP reloads --------------------------------------------------------------------------


def test_sighup_reloads_a_valid_file_and_keeps_the_table_on_an_invalid_one(
    tmp_path: Path, echo_pair: tuple[str, str]
) -> None:
    alpha, _ = echo_pair
    upstreams = {
        "alpha": {"url": alpha, "timeout_seconds": 1},
        "dead": {
            "url": closed_port_url(),
            "timeout_seconds": 1,
            "circuit_breaker": {"failure_threshold": 2, "recovery_timeout_seconds": 120},
        },
    }
    route_a = {"name": "a", "path_prefix": "/a", "upstream": "alpha"}
    route_dead = {"name": "dead", "path_prefix": "/dead", "upstream": "dead", "retry": NO_RETRY}
    route_b = {"name": "b", "path_prefix": "/b", "upstream": "alpha"}
    broken = {
        "name": "c",
        "path_prefix": "/c",
        "upstream": "alpha",
        "rate_limit": {"window_seconds": 0},
    }
    v1 = {"upstreams": upstreams, "routes": [route_a, route_dead]}
    with gateway(tmp_path, v1) as (gw, path), httpx.Client(base_url=gw.url) as client:
        assert client.get("/b/1").status_code == 404
        for _ in range(2):
            client.get("/dead")
        assert metrics(gw)["upstreams"]["dead"]["circuit_breaker_state"] == "OPEN"

        write_config(tmp_path, {"upstreams": upstreams, "routes": [route_a, route_dead, route_b]})
        gw.process.send_signal(signal.SIGHUP)
        wait_for(lambda: client.get("/b/1").status_code == 200, 2.0)
        after_valid = metrics(gw)
        dead_after = client.get("/dead")
        b_report = client.get("/b/1").json()

        write_config(
            tmp_path, {"upstreams": upstreams, "routes": [route_a, route_dead, route_b, broken]}
        )
        gw.process.send_signal(signal.SIGHUP)
        wait_for(lambda: metrics(gw)["config"]["reloads"]["error"] == 1, 2.0)
        after_invalid = metrics(gw)
        still_a = client.get("/a/1")
        still_b = client.get("/b/1")
        no_c = client.get("/c/1")
        prometheus = client.get("/metrics", headers={"Accept": "text/plain"}).text
        log = gw.log()
    assert path.name == "gateway.yaml"
    config = after_valid["config"]
    assert config["version"] == 2
    assert config["last_error"] is None
    assert config["routes"] == 3
    assert config["last_reload"]["result"] == "success"
    assert after_valid["upstreams"]["dead"]["circuit_breaker_state"] == "OPEN"
    assert after_valid["upstreams"]["dead"]["circuit_breaker_transitions"] == {"CLOSED->OPEN": 1}
    assert assert_problem(dead_after, 503, "circuit-open")["circuit_breaker_state"] == "OPEN"
    assert (b_report["upstream"], b_report["path"]) == ("alpha", "/b/1")

    config = after_invalid["config"]
    assert config["version"] == 2  # the old table still serves
    assert config["routes"] == 3
    assert config["reloads"] == {"success": 1, "error": 1}
    assert config["last_reload"]["result"] == "error"
    assert "routes[3] (c).rate_limit.window_seconds" in config["last_error"]
    assert after_invalid["upstreams"]["dead"]["circuit_breaker_state"] == "OPEN"
    assert still_a.status_code == 200
    assert still_b.status_code == 200
    assert_problem(no_c, 404, "not-found")
    failed = [line for line in log.splitlines() if "config_reload_failed" in line]
    assert len(failed) == 1, failed
    assert "rate_limit.window_seconds" in failed[0]
    assert 'gateway_config_reloads_total{result="error"} 1.0' in prometheus
    assert 'gateway_config_reloads_total{result="success"} 1.0' in prometheus


# --- 9. an invalid file at start-up -------------------------------------------------------------


def test_an_invalid_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    config = {
        "upstreams": {"alpha": {"url": "http://127.0.0.1:9"}},
        "routes": [
            {
                "name": "broken",
                "path_prefix": "/x",
                "upstream": "alpha",
                "rate_limit": {"window_seconds": 0},
            }
        ],
    }
    path = write_config(tmp_path, config)
    port = str(free_port())
    runs = [
        subprocess.run(
            [str(BIN / "resilient-gateway"), "--host", "127.0.0.1", "--port", port, *extra],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        for extra, env in (
            ([], {"GATEWAY_CONFIG": str(path)}),
            (["--config", str(path)], {"GATEWAY_CONFIG": ""}),
        )
    ]
    for run in runs:
        assert run.returncode == 2, run.stderr
        lines = run.stderr.splitlines()
        assert len(lines) == 1, run.stderr
        assert lines[0].startswith("resilient-gateway: invalid config"), lines[0]
        assert "routes[0] (broken).rate_limit.window_seconds" in lines[0], lines[0]
        assert str(path) in lines[0]


# --- 10. no file: the default route -------------------------------------------------------------


def test_without_a_file_the_default_route_goes_to_flaky_data(
    tmp_path: Path, echo_pair: tuple[str, str]
) -> None:
    alpha, _ = echo_pair
    env = {"GATEWAY_CONFIG": "", "BACKEND_URL": alpha}
    with service("resilient-gateway", env, tmp_path) as gw:
        answer = httpx.get(f"{gw.url}/api/v1/data", params={"q": "1"})
        posted = httpx.post(f"{gw.url}/api/v1/data", content=b"x")
        report = metrics(gw)
    assert answer.status_code == 200
    assert (answer.json()["path"], answer.json()["query"]) == ("/flaky-data", "q=1")
    assert_problem(posted, 405, "method-not-allowed")
    assert report["config"]["source"] == "environment"
    assert list(report["routes"]) == ["default"]
    assert list(report["upstreams"]) == ["backend"]
