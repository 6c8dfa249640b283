"""The real pair under chaos: every answer clean, none late, and the counters add up."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAOS_GATEWAY = {
    "TRUSTED_PROXIES": "127.0.0.1/32",
    "RATE_LIMIT_REQUESTS_PER_WINDOW": "8",
    "REQUEST_TIMEOUT_SECONDS": "3",
    "BACKEND_TIMEOUT_SECONDS": "1",
    "RECOVERY_TIMEOUT_SECONDS": "1",
    "INITIAL_BACKOFF_SECONDS": "0.1",
    "MAX_BACKOFF_SECONDS": "0.4",
}


async def client_load(
    url: str, clients: int, requests: int
) -> list[tuple[int, str, float, dict[str, Any]]]:
    """``requests`` GETs spread over ``clients`` concurrent clients (distinct X-Forwarded-For)."""
    results: list[tuple[int, str, float, dict[str, Any]]] = []
    queue = iter(range(requests))

    async def one_client(n: int, http: httpx.AsyncClient) -> None:
        for _ in queue:
            started = time.monotonic()
            answer = await http.get(url, headers={"X-Forwarded-For": f"198.51.100.{n}"})
            elapsed = time.monotonic() - started
            results.append((answer.status_code, answer.headers["content-type"], elapsed,
                            answer.json()))  # fmt: skip

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await asyncio.gather(*(one_client(n, http) for n in range(clients)))
    return results


def test_chaos_every_answer_is_clean_timely_and_counted(pair: Callable[..., Any]) -> None:
    backend_env = {"FLAKY_FAILURE_RATE": "0.3", "FLAKY_SLOW_RATE": "0.05",
                   "FLAKY_SLOW_SECONDS": "2", "FLAKY_SEED": "7"}  # fmt: skip
    with pair(backend_env, **CHAOS_GATEWAY) as (gateway, backend):
        results = asyncio.run(client_load(f"{gateway.url}/api/v1/data", 30, 400))
        metrics = httpx.get(f"{gateway.url}/metrics").json()
        stats = httpx.get(f"{backend.url}/stats").json()

    statuses = Counter(status for status, *_ in results)
    assert len(results) == 400
    assert set(statuses) <= {200, 429, 503}, statuses
    assert all(kind.startswith("application/") and "json" in kind for _, kind, _, _ in results)
    assert max(elapsed for _, _, elapsed, _ in results) < 3.0 + 0.5
    assert statuses[200] > 0
    assert statuses[429] > 0

    by_class = metrics["requests_by_status_class"]
    assert (by_class["2xx"], by_class["4xx"], by_class["5xx"]) == (
        statuses[200], statuses[429], statuses[503]
    )  # fmt: skip
    assert metrics["rate_limit_blocked"] == statuses[429]
    assert metrics["rate_limit_allowed"] == 400 - statuses[429]
    refused_first = sum(
        1 for status, _, _, body in results
        if status == 503 and body["type"].endswith(("circuit-open", "upstream-saturated"))
    )  # fmt: skip
    attempts = sum(metrics["upstream_attempts"].values())
    assert attempts == metrics["rate_limit_allowed"] - refused_first + metrics["total_retries"]
    assert stats["requests"] == attempts


def storm(pair: Callable[..., Any], budget_percent: str, requests: int) -> tuple[int, int]:
    settings = {
        "FAILURE_THRESHOLD": "10000",
        "MAX_RETRIES": "3",
        "INITIAL_BACKOFF_SECONDS": "0.01",
        "MAX_BACKOFF_SECONDS": "0.02",
        "RETRY_BUDGET_PERCENT": budget_percent,
        "RETRY_BUDGET_MIN_RETRIES_PER_SECOND": "0",
        "RATE_LIMIT_ENABLED": "false",
    }
    with pair({"FLAKY_FAILURE_RATE": "1"}, **settings) as (gateway, backend):
        results = asyncio.run(client_load(f"{gateway.url}/api/v1/data", 10, requests))
        calls = httpx.get(f"{backend.url}/stats").json()["requests"]
        refused = httpx.get(f"{gateway.url}/metrics").json()["retries_refused_by_budget"]
    assert {status for status, *_ in results} == {503}
    return calls, refused


def test_retry_storm_stays_within_the_budget(pair: Callable[..., Any]) -> None:
    calls, refused = storm(pair, budget_percent="20", requests=100)
    assert calls <= 100 * 1.2
    assert calls >= 100
    assert refused > 0


def test_without_a_budget_the_storm_multiplies_the_load(pair: Callable[..., Any]) -> None:
    calls, refused = storm(pair, budget_percent="1000", requests=100)
    assert calls == 100 * 4
    assert refused == 0
