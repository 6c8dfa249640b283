"""Breaker modes and the admin API on the real pair: both services as processes, real sockets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

TOKEN = "integration-admin-token-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def backend_requests(backend: Any) -> int:
    return int(httpx.get(f"{backend.url}/stats").json()["requests"])


def test_failure_rate_mode_waits_for_the_minimum_calls_then_cuts_off(
    pair: Callable[..., Any],
) -> None:
    settings = {
        "BREAKER_MODE": "failure_rate",
        "MINIMUM_CALLS": "10",
        "SLIDING_WINDOW_SIZE": "20",
        "FAILURE_THRESHOLD": "2",  # ignored in this mode: a run of two must not open it
        "MAX_RETRIES": "0",
    }
    with pair(**settings) as (gateway, backend):
        httpx.put(f"{backend.url}/chaos", json={"failure_rate": 1})
        first_nine = [httpx.get(f"{gateway.url}/api/v1/data") for _ in range(9)]
        assert httpx.get(f"{gateway.url}/metrics").json()["circuit_breaker_state"] == "CLOSED"
        assert backend_requests(backend) == 9
        tenth = httpx.get(f"{gateway.url}/api/v1/data")
        after = [httpx.get(f"{gateway.url}/api/v1/data") for _ in range(5)]
        reached = backend_requests(backend)
        metrics = httpx.get(f"{gateway.url}/metrics").json()
        admin = httpx.get(f"{gateway.url}/admin/breakers", headers=AUTH)
    assert [answer.status_code for answer in first_nine] == [503] * 9
    assert all(a.json()["type"].endswith(":upstream-unavailable") for a in first_nine)
    assert tenth.json()["type"].endswith(":upstream-unavailable")  # it went through, and failed
    assert all(a.json()["type"].endswith(":circuit-open") for a in after)
    assert reached == 10
    assert metrics["circuit_breaker_state"] == "OPEN"
    assert metrics["settings"]["breaker_mode"] == "failure_rate"
    assert admin.status_code == 404  # no ADMIN_TOKEN: the admin API does not exist
    assert admin.headers["content-type"] == "application/problem+json"


def wait_for_trial(gateway: Any, timeout: float = 10.0) -> httpx.Response:
    """Ask until the breaker lets a call through (the HALF_OPEN trial) and return its answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.get(f"{gateway.url}/api/v1/data")
        assert answer.status_code != 429, "rate-limited while waiting for the trial"
        if not answer.json()["type"].endswith(":circuit-open"):
            return answer
        time.sleep(0.05)
    raise AssertionError("the breaker never admitted a trial")


@pytest.mark.slow
def test_failed_trials_double_the_open_time_up_to_the_cap(pair: Callable[..., Any]) -> None:
    settings = {
        "FAILURE_THRESHOLD": "1",
        "RECOVERY_TIMEOUT_SECONDS": "1",
        "BACKEND_TIMEOUT_SECONDS": "1",
        "RECOVERY_BACKOFF_MULTIPLIER": "2",
        "MAX_RECOVERY_TIMEOUT_SECONDS": "4",
        "MAX_RETRIES": "0",
        # About 200 polls in 11 s would pass the default limit (100 a minute), and a 429 would
        # be taken for the trial's answer.
        "RATE_LIMIT_ENABLED": "false",
    }
    with pair(**settings) as (gateway, backend):
        httpx.put(f"{backend.url}/chaos", json={"failure_rate": 1})
        first = httpx.get(f"{gateway.url}/api/v1/data")  # CLOSED -> OPEN, the first opening
        trials = [wait_for_trial(gateway) for _ in range(3)]  # each fails and reopens it
        refused = httpx.get(f"{gateway.url}/api/v1/data")
        metrics = httpx.get(f"{gateway.url}/metrics").json()
        reached = backend_requests(backend)
    # Each answer that opened the breaker says how long this opening lasts.
    assert [int(a.headers["retry-after"]) for a in [first, *trials]] == [1, 2, 4, 4]
    assert [a.json()["retry_after"] for a in [first, *trials]] == [1, 2, 4, 4]
    assert refused.json()["type"].endswith(":circuit-open")
    assert 3 <= int(refused.headers["retry-after"]) <= 4
    assert metrics["circuit_breaker_open_seconds"] == 4.0
    assert reached == 4  # the first failure and three trials; every other call refused


def test_forced_open_through_the_admin_port_stops_traffic_at_once(
    pair: Callable[..., Any],
) -> None:
    admin_port = free_port()
    admin_url = f"http://127.0.0.1:{admin_port}"
    with pair(ADMIN_TOKEN=TOKEN, ADMIN_PORT=str(admin_port)) as (gateway, backend):
        missing = httpx.get(f"{admin_url}/admin/breakers")
        wrong = httpx.get(f"{admin_url}/admin/breakers", headers={"Authorization": "Bearer no"})
        on_proxy_port = httpx.get(f"{gateway.url}/admin/breakers", headers=AUTH)
        assert httpx.get(f"{gateway.url}/api/v1/data").status_code == 200
        before = backend_requests(backend)

        forced = httpx.post(
            f"{admin_url}/admin/breakers/backend", headers=AUTH, json={"state": "FORCED_OPEN"}
        )
        refused = [httpx.get(f"{gateway.url}/api/v1/data") for _ in range(5)]
        after_forcing = backend_requests(backend)

        closed = httpx.post(
            f"{admin_url}/admin/breakers/backend", headers=AUTH, json={"state": "CLOSED"}
        )
        restored = [httpx.get(f"{gateway.url}/api/v1/data") for _ in range(3)]
        after_closing = backend_requests(backend)
        listed = httpx.get(f"{admin_url}/admin/breakers", headers=AUTH).json()
        metrics = httpx.get(f"{gateway.url}/metrics").json()
        log = gateway.log()
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.headers["content-type"] == "application/problem+json"
    assert on_proxy_port.status_code == 404  # with ADMIN_PORT, only that port serves it
    assert forced.status_code == 200
    assert forced.json()["state"] == "FORCED_OPEN"
    assert [answer.status_code for answer in refused] == [503] * 5
    assert all(a.json()["type"].endswith(":circuit-forced-open") for a in refused)
    assert after_forcing == before
    assert closed.json()["state"] == "CLOSED"
    assert [answer.status_code for answer in restored] == [200] * 3
    assert after_closing == before + 3
    assert listed["breakers"]["backend"]["state"] == "CLOSED"
    assert metrics["admin"]["unauthorized_requests"] == 2
    assert [e["current"] for e in metrics["admin"]["events"]] == ["FORCED_OPEN", "CLOSED"]
    assert all(e["by"].startswith("127.0.0.1:") for e in metrics["admin"]["events"])
    assert log.count('"admin_breaker_change"') == 2
    assert log.count('"admin_unauthorized"') == 2
    assert TOKEN not in log
