"""Both services as real processes on free ports, driven over real sockets through /chaos."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.conftest import free_port, service

pytestmark = pytest.mark.integration

FAST_RETRIES = {"INITIAL_BACKOFF_SECONDS": "0.05", "MAX_BACKOFF_SECONDS": "0.2"}


def test_retries_recover_a_transient_failure(pair: Callable[..., Any]) -> None:
    with pair(**FAST_RETRIES) as (gateway, backend):
        httpx.put(f"{backend.url}/chaos", json={"fail_next": 2})
        answer = httpx.get(f"{gateway.url}/api/v1/data", headers={"X-Request-ID": "trace-me"})
        metrics = httpx.get(f"{gateway.url}/metrics").json()
        stats = httpx.get(f"{backend.url}/stats").json()
    assert answer.status_code == 200
    assert metrics["total_retries"] == 2
    assert (stats["requests"], stats["failures"], stats["ok"]) == (3, 2, 1)
    assert stats["last_request_id"] == "trace-me"


def test_breaker_opens_fails_fast_and_recovers(pair: Callable[..., Any]) -> None:
    settings = {
        "FAILURE_THRESHOLD": "3",
        "RECOVERY_TIMEOUT_SECONDS": "1",
        "BACKEND_TIMEOUT_SECONDS": "1",
        "MAX_RETRIES": "0",
    }
    with pair(**settings) as (gateway, backend):
        httpx.put(f"{backend.url}/chaos", json={"failure_rate": 1})
        failures = [httpx.get(f"{gateway.url}/api/v1/data") for _ in range(3)]
        assert httpx.get(f"{gateway.url}/metrics").json()["circuit_breaker_state"] == "OPEN"
        reached = httpx.get(f"{backend.url}/stats").json()["requests"]
        started = time.monotonic()
        fast = httpx.get(f"{gateway.url}/api/v1/data")
        fast_seconds = time.monotonic() - started
        assert httpx.get(f"{backend.url}/stats").json()["requests"] == reached

        httpx.put(f"{backend.url}/chaos", json={"failure_rate": 0})
        time.sleep(1.1)
        recovered = httpx.get(f"{gateway.url}/api/v1/data")
        metrics = httpx.get(f"{gateway.url}/metrics").json()
    assert [f.status_code for f in failures] == [503, 503, 503]
    assert fast.status_code == 503
    assert fast.json()["circuit_breaker_state"] == "OPEN"
    assert int(fast.headers["retry-after"]) >= 1
    assert fast_seconds < 0.5
    assert recovered.status_code == 200
    assert metrics["circuit_breaker_state"] == "CLOSED"
    assert metrics["circuit_breaker_transitions"] == {
        "CLOSED->OPEN": 1,
        "OPEN->HALF_OPEN": 1,
        "HALF_OPEN->CLOSED": 1,
    }


def test_rate_limit_answers_429_after_the_limit(pair: Callable[..., Any]) -> None:
    with pair(RATE_LIMIT_REQUESTS_PER_WINDOW="3", RATE_LIMIT_WINDOW_SECONDS="30") as (gateway, _):
        statuses = [httpx.get(f"{gateway.url}/api/v1/data").status_code for _ in range(4)]
        blocked = httpx.get(f"{gateway.url}/api/v1/data")
        forged = httpx.get(f"{gateway.url}/api/v1/data", headers={"X-Forwarded-For": "9.9.9.9"})
        metrics = httpx.get(f"{gateway.url}/metrics").json()
    assert statuses == [200, 200, 200, 429]
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 30
    assert forged.status_code == 429
    assert (metrics["rate_limit_allowed"], metrics["rate_limit_blocked"]) == (3, 3)


def test_backend_down_gives_a_quick_503(tmp_path: Any) -> None:
    env = {"BACKEND_URL": f"http://127.0.0.1:{free_port()}", **FAST_RETRIES}
    with service("resilient-gateway", env, tmp_path) as gateway:
        started = time.monotonic()
        answer = httpx.get(f"{gateway.url}/api/v1/data")
        elapsed = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["reason"] == "connection_error"
    assert elapsed < 2.0


def test_slow_backend_times_out_per_attempt(pair: Callable[..., Any]) -> None:
    settings = {"BACKEND_TIMEOUT_SECONDS": "0.2", "MAX_RETRIES": "1", **FAST_RETRIES}
    with pair(**settings) as (gateway, backend):
        httpx.put(f"{backend.url}/chaos", json={"latency_seconds": 1})
        started = time.monotonic()
        answer = httpx.get(f"{gateway.url}/api/v1/data", timeout=10)
        elapsed = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.json()["reason"] == "timeout"
    assert answer.json()["attempts"] == 2
    assert elapsed < 1.0


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_one_request_id_is_followed_through_both_services_logs(pair: Callable[..., Any]) -> None:
    with pair(**FAST_RETRIES) as (gateway, backend):
        httpx.put(f"{backend.url}/chaos", json={"fail_next": 1})
        answer = httpx.get(f"{gateway.url}/api/v1/data", headers={"X-Request-ID": "follow-me-42"})
        httpx.get(f"{gateway.url}/api/v1/data")
        gateway_log, backend_log = gateway.log(), backend.log()
    assert answer.headers["x-request-id"] == "follow-me-42"
    at_gateway = [e for e in _json_lines(gateway_log) if e.get("request_id") == "follow-me-42"]
    at_backend = [e for e in _json_lines(backend_log) if e.get("request_id") == "follow-me-42"]
    assert [(e["event"], e["status"], e["attempts"]) for e in at_gateway] == [("request", 200, 2)]
    assert [(e["event"], e["status"]) for e in at_backend] == [
        ("flaky_data", 503),
        ("flaky_data", 200),
    ]


def test_upstream_retry_after_is_waited_for_or_passed_on(pair: Callable[..., Any]) -> None:
    with pair(**FAST_RETRIES) as (gateway, backend):
        httpx.put(f"{backend.url}/chaos", json={"fail_next": 1, "retry_after_seconds": 1})
        started = time.monotonic()
        waited = httpx.get(f"{gateway.url}/api/v1/data")
        waited_seconds = time.monotonic() - started

        httpx.put(f"{backend.url}/chaos", json={"fail_next": 1, "retry_after_seconds": 60})
        started = time.monotonic()
        passed_on = httpx.get(f"{gateway.url}/api/v1/data")
        passed_on_seconds = time.monotonic() - started
    assert waited.status_code == 200
    assert 1.0 <= waited_seconds < 2.0
    assert passed_on.status_code == 503
    assert passed_on.headers["retry-after"] == "60"
    assert passed_on.json()["stopped_by"] == "upstream_retry_after"
    assert passed_on_seconds < 1.0


def test_answers_carry_one_date_header(pair: Callable[..., Any]) -> None:
    with pair() as (gateway, _):
        answer = httpx.get(f"{gateway.url}/api/v1/data")
    assert answer.status_code == 200
    assert len(answer.headers.get_list("date")) == 1
