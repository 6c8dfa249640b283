"""The flaky backend, in process: failures, chaos control and stats."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from flaky_backend.app import create_app
from flaky_backend.settings import BackendSettings


@pytest.fixture
async def backend() -> AsyncIterator[httpx.AsyncClient]:
    settings = BackendSettings(failure_rate=0, slow_rate=0, slow_seconds=0, seed=1)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://backend") as client:
        yield client


async def test_healthy_backend_answers_data(backend: httpx.AsyncClient) -> None:
    answer = await backend.get("/flaky-data", headers={"X-Request-ID": "r-1"})
    assert answer.status_code == 200
    assert answer.json()["data"]["request"] == 1
    stats = (await backend.get("/stats")).json()
    assert stats == {"requests": 1, "ok": 1, "failures": 0, "slow": 0, "last_request_id": "r-1"}


async def test_fail_next_fails_exactly_that_many(backend: httpx.AsyncClient) -> None:
    await backend.put("/chaos", json={"fail_next": 2, "failure_status": 502})
    statuses = [(await backend.get("/flaky-data")).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]
    assert (await backend.get("/chaos")).json()["fail_next"] == 0


async def test_put_changes_only_the_given_fields(backend: httpx.AsyncClient) -> None:
    answer = await backend.put("/chaos", json={"failure_rate": 1})
    assert answer.json()["failure_rate"] == 1
    assert answer.json()["slow_rate"] == 0
    assert (await backend.get("/flaky-data")).status_code == 503


async def test_delete_restores_the_start_up_settings(backend: httpx.AsyncClient) -> None:
    await backend.put("/chaos", json={"failure_rate": 1, "latency_seconds": 2})
    restored = (await backend.delete("/chaos")).json()
    assert restored == {
        "retry_after_seconds": None,
        "failure_rate": 0,
        "slow_rate": 0,
        "slow_seconds": 0,
        "latency_seconds": 0,
        "failure_status": 503,
        "fail_next": 0,
    }


@pytest.mark.parametrize(
    "patch",
    [
        {"failure_rate": 1.5},
        {"slow_rate": -1},
        {"failure_status": 200},
        {"fail_next": -2},
        {"no_such_field": 1},
        {"failure_rate": "lots"},
    ],
)
async def test_bad_chaos_values_get_422(
    backend: httpx.AsyncClient, patch: dict[str, object]
) -> None:
    answer = await backend.put("/chaos", json=patch)
    assert answer.status_code == 422
    assert (await backend.get("/chaos")).json()["failure_rate"] == 0


async def test_failures_follow_the_seeded_rate() -> None:
    async def run() -> list[int]:
        app = create_app(BackendSettings(failure_rate=0.3, slow_rate=0, seed=7))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            return [(await client.get("/flaky-data")).status_code for _ in range(400)]

    first, second = await run(), await run()
    assert first == second
    assert 0.2 < first.count(503) / len(first) < 0.4


async def test_failures_can_carry_retry_after(backend: httpx.AsyncClient) -> None:
    await backend.put("/chaos", json={"fail_next": 1, "retry_after_seconds": 7})
    failed = await backend.get("/flaky-data")
    assert (failed.status_code, failed.headers["retry-after"]) == (503, "7")
    await backend.put("/chaos", json={"retry_after_seconds": None, "fail_next": 1})
    assert "retry-after" not in (await backend.get("/flaky-data")).headers


async def test_with_a_chaos_token_only_a_bearer_of_it_changes_chaos() -> None:
    settings = BackendSettings(failure_rate=0, slow_rate=0, slow_seconds=0, seed=1)
    settings = settings.model_copy(update={"chaos_token": "s3cret"})
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://backend") as client:
        anonymous = await client.put("/chaos", json={"failure_rate": 1})
        wrong = await client.delete("/chaos", headers={"Authorization": "Bearer nope"})
        right = await client.put(
            "/chaos", json={"failure_rate": 1}, headers={"Authorization": "Bearer s3cret"}
        )
        readable = await client.get("/chaos")
    assert (anonymous.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert readable.json()["failure_rate"] == 1


def test_the_chaos_token_is_read_from_chaos_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAOS_TOKEN", "from-env")
    assert BackendSettings().chaos_token == "from-env"
