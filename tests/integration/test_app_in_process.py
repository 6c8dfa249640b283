"""The real app and wiring, in process, with a fake clock and a scripted upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.backend_client.fake import FakeUpstream
from domain.errors import UpstreamUnavailable
from domain.ports import UpstreamResponse
from tests.integration.conftest import gateway_in_process

PROBLEM = "application/problem+json"


async def test_health() -> None:
    async with gateway_in_process() as gw:
        answer = await gw.client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


async def test_upstream_answer_is_passed_through_with_its_headers() -> None:
    body = b'{"data":1}'
    upstream = FakeUpstream(
        [UpstreamResponse(200, (("content-type", "application/json"), ("x-backend", "yes")), body)]
    )
    async with gateway_in_process(upstream) as gw:
        answer = await gw.client.get("/api/v1/data?page=2")
    assert answer.status_code == 200
    assert answer.content == body
    assert answer.headers["x-backend"] == "yes"
    request, _ = upstream.calls[0]
    assert (request.method, request.path, request.query) == ("GET", "/flaky-data", "page=2")


async def test_request_id_is_kept_when_well_formed_and_sent_upstream() -> None:
    async with gateway_in_process() as gw:
        answer = await gw.client.get("/api/v1/data", headers={"X-Request-ID": "abc-123"})
        bad = await gw.client.get("/api/v1/data", headers={"X-Request-ID": "bad id!" * 40})
    assert answer.headers["x-request-id"] == "abc-123"
    assert dict(gw.upstream.calls[0][0].headers)["x-request-id"] == "abc-123"
    assert bad.headers["x-request-id"] != "bad id!" * 40
    assert len(bad.headers["x-request-id"]) == 32


async def test_new_request_ids_are_distinct_hex() -> None:
    async with gateway_in_process() as gw:
        answers = [await gw.client.get("/health") for _ in range(300)]
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert len(set(ids)) == 300
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


async def test_over_the_limit_gives_429_problem_with_retry_after() -> None:
    async with gateway_in_process(
        rate_limit_requests_per_window=2, rate_limit_window_seconds=60
    ) as gw:
        first = await gw.client.get("/api/v1/data")
        await gw.client.get("/api/v1/data")
        gw.clock.advance(10.5)
        blocked = await gw.client.get("/api/v1/data")
    assert first.headers["ratelimit-remaining"] == "1"
    assert first.headers["ratelimit-policy"] == '"default";q=2;w=60'
    assert blocked.status_code == 429
    assert blocked.headers["content-type"] == PROBLEM
    assert blocked.headers["retry-after"] == "50"
    problem = blocked.json()
    assert problem["status"] == 429
    assert problem["instance"] == blocked.headers["x-request-id"]
    assert problem["type"].endswith("#quota-exceeded")
    assert len(gw.upstream.calls) == 2


async def test_forged_forwarded_for_gives_no_fresh_limit() -> None:
    async with gateway_in_process(rate_limit_requests_per_window=1) as gw:
        await gw.client.get("/api/v1/data")
        forged = await gw.client.get("/api/v1/data", headers={"X-Forwarded-For": "1.2.3.4"})
    assert forged.status_code == 429


async def test_trusted_proxy_makes_forwarded_clients_separate() -> None:
    async with gateway_in_process(
        client_host="10.0.0.5", trusted_proxies="10.0.0.0/8", rate_limit_requests_per_window=1
    ) as gw:
        a = await gw.client.get("/api/v1/data", headers={"X-Forwarded-For": "198.51.100.1"})
        b = await gw.client.get("/api/v1/data", headers={"X-Forwarded-For": "198.51.100.2"})
        a_again = await gw.client.get("/api/v1/data", headers={"X-Forwarded-For": "198.51.100.1"})
    assert (a.status_code, b.status_code, a_again.status_code) == (200, 200, 429)


async def test_open_breaker_answers_503_with_retry_after_without_upstream_call() -> None:
    upstream = FakeUpstream(default=UpstreamUnavailable("refused"))
    async with gateway_in_process(
        upstream, failure_threshold=2, recovery_timeout_seconds=20, max_retries=3
    ) as gw:
        failed = await gw.client.get("/api/v1/data")
        calls = len(upstream.calls)
        gw.clock.advance(5)
        fast = await gw.client.get("/api/v1/data")
        metrics = (await gw.client.get("/metrics")).json()
    assert failed.status_code == 503
    assert failed.json()["stopped_by"] == "circuit_open"
    assert calls == 2
    assert fast.status_code == 503
    assert fast.headers["content-type"] == PROBLEM
    assert fast.headers["retry-after"] == "15"
    assert fast.json()["circuit_breaker_state"] == "OPEN"
    assert len(upstream.calls) == calls
    assert metrics["circuit_breaker_state"] == "OPEN"


async def test_exhausted_retries_give_503_problem() -> None:
    async with gateway_in_process(FakeUpstream(default=503), failure_threshold=50) as gw:
        answer = await gw.client.get("/api/v1/data")
        metrics = (await gw.client.get("/metrics")).json()
    assert answer.status_code == 503
    problem = answer.json()
    assert (problem["attempts"], problem["stopped_by"]) == (4, "retries_exhausted")
    assert gw.clock.sleeps == [0.5, 1.0, 2.0]
    assert metrics["total_retries"] == 3


@pytest.mark.parametrize("status", [500, 404, 418])
async def test_non_retryable_status_and_body_pass_unchanged(status: int) -> None:
    upstream = FakeUpstream([UpstreamResponse(status, (), b"upstream says no")])
    async with gateway_in_process(upstream) as gw:
        answer = await gw.client.get("/api/v1/data")
    assert (answer.status_code, answer.content) == (status, b"upstream says no")
    assert len(upstream.calls) == 1


async def test_a_body_sent_in_chunks_reaches_the_upstream_whole() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"first,", b"second,", b"third"):
            yield part

    async with gateway_in_process(methods=("GET", "POST")) as gw:
        answer = await gw.client.post("/api/v1/data?x=1", content=chunks())
    assert answer.status_code == 200
    request, _ = gw.upstream.calls[0]
    assert (request.method, request.query, request.body) == ("POST", "x=1", b"first,second,third")


async def test_only_the_exact_path_and_methods_are_proxied() -> None:
    async with gateway_in_process() as gw:
        slash = await gw.client.get("/api/v1/data/", follow_redirects=False)
        post = await gw.client.post("/api/v1/data", content=b"x")
    assert slash.status_code in (307, 404)
    assert post.status_code == 405
    assert post.headers["allow"] == "GET"
    assert gw.upstream.calls == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("POST", "/api/v1/data", 405), ("DELETE", "/health", 405)],
)
async def test_gateway_errors_are_problem_json(method: str, path: str, status: int) -> None:
    async with gateway_in_process() as gw:
        answer = await gw.client.request(method, path)
    assert answer.status_code == status
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["status"] == status
    assert answer.json()["instance"] == answer.headers["x-request-id"]


async def test_metrics_json_counts_exactly() -> None:
    upstream = FakeUpstream([503, 200], default=200)
    async with gateway_in_process(upstream, rate_limit_requests_per_window=2) as gw:
        for _ in range(3):
            await gw.client.get("/api/v1/data")
        metrics = (await gw.client.get("/metrics")).json()
    assert metrics["circuit_breaker_state"] == "CLOSED"
    assert metrics["total_retries"] == 1
    assert (metrics["rate_limit_allowed"], metrics["rate_limit_blocked"]) == (2, 1)
    assert metrics["requests_by_status_class"]["2xx"] == 2
    assert metrics["requests_by_status_class"]["4xx"] == 1
    assert metrics["upstream_attempts"] == {
        "success": 2,
        "http_5xx": 1,
        "timeout": 0,
        "connection_error": 0,
        "bad_answer": 0,
    }


async def test_metrics_in_prometheus_format_when_a_scraper_asks() -> None:
    async with gateway_in_process(FakeUpstream([503]), rate_limit_requests_per_window=1) as gw:
        await gw.client.get("/api/v1/data")
        await gw.client.get("/api/v1/data")
        answer = await gw.client.get("/metrics", headers={"Accept": "text/plain;version=0.0.4"})
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    route, upstream = ("route", "default"), ("upstream", "backend")
    assert samples["gateway_retries_total", (route, upstream)] == 1
    blocked = ("decision", "blocked")
    assert samples["gateway_rate_limit_decisions_total", (blocked, route, upstream)] == 1
    closed = ("state", "CLOSED")
    assert samples["gateway_circuit_breaker_state", (route, closed, upstream)] == 1
    http_5xx = ("outcome", "http_5xx")
    assert samples["gateway_upstream_attempts_total", (http_5xx, route, upstream)] == 1


async def test_openapi_schema_lists_the_proxy_route() -> None:
    async with gateway_in_process() as gw:
        schema = (await gw.client.get("/openapi.json")).json()
    responses = schema["paths"]["/api/v1/data"]["get"]["responses"]
    assert {"200", "429", "503"} <= set(responses)


@pytest.mark.parametrize(
    "forwarded_for",
    ["", "garbage", ",,,,", "1.2.3.4, , ,", "999.999.1.1", "[::1", "\t", "x" * 8000,
     ", ".join(["10.0.0.1"] * 2000)],
)  # fmt: skip
async def test_malformed_forwarded_for_never_causes_a_500(forwarded_for: str) -> None:
    async with gateway_in_process(client_host="10.0.0.5", trusted_proxies="10.0.0.0/8") as gw:
        answer = await gw.client.get("/api/v1/data", headers={"X-Forwarded-For": forwarded_for})
    assert answer.status_code == 200
