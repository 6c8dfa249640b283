"""The admin API in process: the real app and wiring, a fake clock and a scripted upstream."""

from __future__ import annotations

import json

import httpx
from structlog.testing import capture_logs

from adapters.backend_client.fake import FakeUpstream
from tests.integration.conftest import gateway_in_process

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_the_admin_api_does_not_exist_without_a_token() -> None:
    async with gateway_in_process() as gateway:
        answer = await gateway.client.get("/admin/breakers", headers=AUTH)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
        assert "/admin/breakers" not in (await gateway.client.get("/openapi.json")).text


async def test_a_missing_or_wrong_token_is_a_counted_401_logged_without_the_token() -> None:
    async with gateway_in_process(admin_token=TOKEN) as gateway:
        with capture_logs() as logs:
            missing = await gateway.client.get("/admin/breakers")
            wrong = await gateway.client.post(
                "/admin/breakers/backend",
                headers={"Authorization": "Bearer not-the-admin-token-at-all"},
                json={"state": "FORCED_OPEN"},
            )
        for answer in (missing, wrong):
            assert answer.status_code == 401
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["type"].endswith(":admin-unauthorized")
            assert answer.headers["www-authenticate"].startswith("Bearer")
        refusals = [entry for entry in logs if entry["event"] == "admin_unauthorized"]
        assert [entry["reason"] for entry in refusals] == ["missing", "wrong"]
        assert "not-the-admin-token" not in json.dumps(logs, default=str)
        metrics = (await gateway.client.get("/metrics")).json()
        assert metrics["admin"]["unauthorized_requests"] == 2
        assert metrics["admin"]["events"] == []
        assert metrics["circuit_breaker_state"] == "CLOSED"  # the wrong token changed nothing


async def test_breakers_are_listed_with_state_mode_figures_and_open_time() -> None:
    upstream = FakeUpstream([503, 200, 503])
    settings = {"breaker_mode": "failure_rate", "minimum_calls": 10, "sliding_window_size": 10}
    async with gateway_in_process(upstream, admin_token=TOKEN, max_retries=0, **settings) as gw:
        for _ in range(3):
            await gw.client.get("/api/v1/data")
        answer = await gw.client.get("/admin/breakers", headers=AUTH)
    assert answer.status_code == 200
    backend = answer.json()["breakers"]["backend"]
    assert backend["state"] == "CLOSED"
    assert backend["mode"] == "failure_rate"
    assert (backend["calls"], backend["failures"], backend["minimum_calls"]) == (3, 2, 10)
    assert backend["failure_rate_percent"] == 66.667
    assert backend["open_seconds"] == 30.0


async def test_forced_open_refuses_every_call_until_closed_again() -> None:
    upstream = FakeUpstream()
    async with gateway_in_process(upstream, admin_token=TOKEN) as gateway:
        with capture_logs() as logs:
            changed = await gateway.client.post(
                "/admin/breakers/backend", headers=AUTH, json={"state": "FORCED_OPEN"}
            )
        assert changed.status_code == 200
        assert (changed.json()["previous_state"], changed.json()["state"]) == (
            "CLOSED",
            "FORCED_OPEN",
        )
        gateway.clock.advance(3600.0)
        refused = await gateway.client.get("/api/v1/data")
        assert refused.status_code == 503
        assert refused.json()["type"].endswith(":circuit-forced-open")
        assert "operator" in refused.json()["detail"]
        assert upstream.calls == []
        change = next(entry for entry in logs if entry["event"] == "admin_breaker_change")
        assert change["peer"].startswith("203.0.113.1")
        assert (change["from_state"], change["to_state"]) == ("CLOSED", "FORCED_OPEN")

        await gateway.client.post("/admin/breakers/backend", headers=AUTH, json={"state": "CLOSED"})
        assert (await gateway.client.get("/api/v1/data")).status_code == 200
        assert len(upstream.calls) == 1
        metrics = (await gateway.client.get("/metrics")).json()
        events = metrics["admin"]["events"]
        assert [(e["breaker"], e["previous"], e["current"]) for e in events] == [
            ("backend", "CLOSED", "FORCED_OPEN"),
            ("backend", "FORCED_OPEN", "CLOSED"),
        ]
        assert events[0]["by"].startswith("203.0.113.1")
        prometheus = (await gateway.client.get("/metrics", headers={"Accept": "text/plain"})).text
        assert 'gateway_breaker_admin_changes_total{breaker="backend",state="FORCED_OPEN"} 1.0' in (
            prometheus
        )


async def test_disabled_lets_every_call_through_and_records_nothing() -> None:
    upstream = FakeUpstream(default=503)
    async with gateway_in_process(upstream, admin_token=TOKEN, max_retries=0) as gateway:
        await gateway.client.post(
            "/admin/breakers/backend", headers=AUTH, json={"state": "DISABLED"}
        )
        statuses = [(await gateway.client.get("/api/v1/data")).status_code for _ in range(20)]
        assert statuses == [503] * 20
        assert len(upstream.calls) == 20  # FAILURE_THRESHOLD is 5: a working breaker stops at 5
        listed = (await gateway.client.get("/admin/breakers", headers=AUTH)).json()
        assert listed["breakers"]["backend"]["state"] == "DISABLED"
        assert listed["breakers"]["backend"]["consecutive_failures"] == 0


async def test_closed_resets_an_open_breaker_with_empty_counters() -> None:
    upstream = FakeUpstream(default=503)
    async with gateway_in_process(upstream, admin_token=TOKEN, max_retries=0) as gateway:
        for _ in range(5):
            await gateway.client.get("/api/v1/data")
        assert (await gateway.client.get("/metrics")).json()["circuit_breaker_state"] == "OPEN"
        answer = await gateway.client.post(
            "/admin/breakers/backend", headers=AUTH, json={"state": "CLOSED"}
        )
        assert answer.json()["state"] == "CLOSED"
        assert answer.json()["consecutive_failures"] == 0
        for _ in range(4):
            await gateway.client.get("/api/v1/data")
        assert (await gateway.client.get("/metrics")).json()["circuit_breaker_state"] == "CLOSED"


async def test_unknown_breakers_and_states_are_clean_problems() -> None:
    async with gateway_in_process(admin_token=TOKEN) as gateway:
        unknown = await gateway.client.post(
            "/admin/breakers/payments", headers=AUTH, json={"state": "CLOSED"}
        )
        assert unknown.status_code == 404
        assert "backend" in unknown.json()["detail"]
        bad = await gateway.client.post(
            "/admin/breakers/backend", headers=AUTH, json={"state": "HALF_OPEN"}
        )
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"


async def test_with_its_own_port_the_admin_api_leaves_the_proxy_app() -> None:
    async with gateway_in_process(admin_token=TOKEN, admin_port=9999) as gateway:
        assert (await gateway.client.get("/admin/breakers", headers=AUTH)).status_code == 404
        admin_app = gateway.container.admin_app()
        transport = httpx.ASGITransport(app=admin_app, client=("198.51.100.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as admin:
            assert (await admin.get("/admin/breakers")).status_code == 401
            forced = await admin.post(
                "/admin/breakers/backend", headers=AUTH, json={"state": "FORCED_OPEN"}
            )
            assert forced.status_code == 200
            assert (await admin.get("/api/v1/data")).status_code == 404
        assert (await gateway.client.get("/api/v1/data")).status_code == 503
        events = (await gateway.client.get("/metrics")).json()["admin"]["events"]
        assert events[-1]["by"] == "198.51.100.7:40000"


async def test_the_bearer_scheme_is_case_insensitive_but_the_token_is_not() -> None:
    async with gateway_in_process(admin_token=TOKEN) as gateway:
        lower = await gateway.client.get(
            "/admin/breakers", headers={"Authorization": f"bearer {TOKEN}"}
        )
        shouted = await gateway.client.get(
            "/admin/breakers", headers={"Authorization": f"Bearer {TOKEN.upper()}"}
        )
        basic = await gateway.client.get(
            "/admin/breakers", headers={"Authorization": f"Basic {TOKEN}"}
        )
    assert (lower.status_code, shouted.status_code, basic.status_code) == (200, 401, 401)


async def test_every_admin_change_is_an_event_on_the_dashboard() -> None:
    async with gateway_in_process(admin_token=TOKEN) as gateway:
        await gateway.client.post(
            "/admin/breakers/backend", headers=AUTH, json={"state": "FORCED_OPEN"}
        )
        recent = gateway.container.events().recent()
    change = next(event for event in recent if event["kind"] == "breaker_admin_change")
    assert (change["upstream"], change["previous"], change["current"]) == (
        "backend",
        "CLOSED",
        "FORCED_OPEN",
    )
    assert change["by"].startswith("203.0.113.1")
