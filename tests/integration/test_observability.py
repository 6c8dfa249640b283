"""Metrics, logs and standard headers on real responses of the in-process app."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from adapters.backend_client.fake import FakeUpstream
from adapters.http.app import preferred_metrics_format
from domain.errors import UpstreamTimeout, UpstreamUnavailable
from tests.integration.conftest import InProcessGateway, gateway_in_process

SCRAPER_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def prometheus_samples(gw: InProcessGateway) -> Samples:
    answer = await gw.client.get("/metrics", headers={"Accept": "text/plain"})
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


async def scripted_sequence(gw: InProcessGateway) -> None:
    """A success, a retried success, a rate-limit block (another client), a breaker opening."""
    await gw.client.get("/api/v1/data")  # success
    gw.upstream.push(503, UpstreamTimeout("slow"))
    await gw.client.get("/api/v1/data")  # two retries, then success
    gw.upstream.push(*[UpstreamUnavailable("down")] * 3)
    await gw.client.get("/api/v1/data")  # 3 failures open the breaker (threshold 3)
    await gw.client.get("/api/v1/data")  # refused by the open breaker
    await gw.client.get("/api/v1/data")  # over the limit of 4: blocked


async def test_every_prometheus_family_after_a_scripted_sequence() -> None:
    async with gateway_in_process(
        FakeUpstream(), failure_threshold=3, rate_limit_requests_per_window=4
    ) as gw:
        await scripted_sequence(gw)
        samples = await prometheus_samples(gw)
    route, up = ("route", "default"), ("upstream", "backend")
    expected = {
        ("gateway_requests_total", (route, ("status_class", "2xx"), up)): 2,
        ("gateway_requests_total", (route, ("status_class", "4xx"), up)): 1,
        ("gateway_requests_total", (route, ("status_class", "5xx"), up)): 2,
        ("gateway_request_duration_seconds_count", (route, up)): 5,
        ("gateway_upstream_attempts_total", (("outcome", "success"), route, up)): 2,
        ("gateway_upstream_attempts_total", (("outcome", "http_5xx"), route, up)): 1,
        ("gateway_upstream_attempts_total", (("outcome", "timeout"), route, up)): 1,
        ("gateway_upstream_attempts_total", (("outcome", "connection_error"), route, up)): 3,
        ("gateway_retries_total", (route, up)): 4,
        ("gateway_rate_limit_decisions_total", (("decision", "allowed"), route, up)): 4,
        ("gateway_rate_limit_decisions_total", (("decision", "blocked"), route, up)): 1,
        ("gateway_rate_limit_tracked_clients", (route, up)): 1,
        ("gateway_circuit_breaker_state", (route, ("state", "OPEN"), up)): 1,
        ("gateway_circuit_breaker_state", (route, ("state", "CLOSED"), up)): 0,
        ("gateway_circuit_breaker_state", (route, ("state", "HALF_OPEN"), up)): 0,
        (
            "gateway_circuit_breaker_transitions_total",
            (("from", "CLOSED"), route, ("to", "OPEN"), up),
        ): 1,
        # the call refused without an attempt; the retry the opening stopped is apart
        ("gateway_circuit_breaker_rejections_total", (route, up)): 1,
        ("gateway_retries_stopped_by_breaker_total", (route, up)): 1,
    }
    assert {key: samples.get(key) for key in expected} == expected


async def test_json_and_prometheus_read_the_same_counters() -> None:
    async with gateway_in_process(
        FakeUpstream(), failure_threshold=3, rate_limit_requests_per_window=4
    ) as gw:
        await scripted_sequence(gw)
        as_json = (await gw.client.get("/metrics")).json()
        samples = await prometheus_samples(gw)
    route, up = ("route", "default"), ("upstream", "backend")
    assert as_json["total_retries"] == samples["gateway_retries_total", (route, up)]
    assert (
        as_json["rate_limit_blocked"]
        == samples["gateway_rate_limit_decisions_total", (("decision", "blocked"), route, up)]
    )
    assert (
        as_json["circuit_breaker_rejections"]
        == samples["gateway_circuit_breaker_rejections_total", (route, up)]
    )
    assert as_json["circuit_breaker_state"] == "OPEN"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("", "json"),
        ("*/*", "json"),
        ("application/json", "json"),
        ("text/plain", "prometheus"),
        ("text/plain;version=0.0.4", "prometheus"),
        (SCRAPER_ACCEPT, "openmetrics"),
        ("application/json, text/plain;q=0.5", "json"),
        ("text/plain;q=0.9, application/json;q=0.1", "prometheus"),
        ("text/html, */*;q=0.8", "json"),
        ("text/plain;q=bogus", "json"),
    ],
)
def test_metrics_format_follows_the_accept_header(accept: str, chosen: str) -> None:
    assert preferred_metrics_format(accept) == chosen


async def test_a_scraper_gets_openmetrics() -> None:
    async with gateway_in_process() as gw:
        answer = await gw.client.get("/metrics", headers={"Accept": SCRAPER_ACCEPT})
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.rstrip().endswith("# EOF")


async def test_one_structured_log_line_per_request() -> None:
    upstream = FakeUpstream([503], default=200)
    with capture_logs() as logs:
        async with gateway_in_process(upstream) as gw:
            answer = await gw.client.get("/api/v1/data", headers={"X-Request-ID": "log-me"})
            await gw.client.get("/nowhere")
    requests = [entry for entry in logs if entry["event"] == "request"]
    assert len(requests) == 2
    line = requests[0]
    assert answer.status_code == 200
    assert {key: line[key] for key in line if key not in ("duration_ms", "log_level")} == {
        "event": "request",
        "request_id": "log-me",
        "client": "203.0.113.1",
        "method": "GET",
        "path": "/api/v1/data",
        "route": "default",
        "status": 200,
        "attempts": 2,
        "breaker_state": "CLOSED",
        "rate_limit": "allowed",
    }
    assert line["duration_ms"] >= 0
    assert (requests[1]["status"], requests[1]["route"]) == (404, "unmatched")


async def test_breaker_transitions_are_logged_as_events() -> None:
    with capture_logs() as logs:
        async with gateway_in_process(FakeUpstream(default=503), failure_threshold=1) as gw:
            await gw.client.get("/api/v1/data")
    transitions = [entry for entry in logs if entry["event"] == "breaker_transition"]
    assert transitions == [
        {
            "event": "breaker_transition",
            "upstream": "backend",
            "route": "default",
            "from_state": "CLOSED",
            "to_state": "OPEN",
            "log_level": "warning",
        }
    ]


async def test_rate_limit_headers_on_allowed_and_blocked_answers() -> None:
    async with gateway_in_process(rate_limit_requests_per_window=2) as gw:
        first = await gw.client.get("/api/v1/data")
        gw.clock.advance(20.4)
        second = await gw.client.get("/api/v1/data")
        blocked = await gw.client.get("/api/v1/data")
    assert first.headers["ratelimit"] == '"default";r=1;t=60'
    assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("2", "1")
    assert second.headers["ratelimit"] == '"default";r=0;t=40'
    assert blocked.headers["ratelimit"] == '"default";r=0;t=40'
    assert blocked.headers["ratelimit-reset"] == "40"
    assert int(blocked.headers["retry-after"]) >= int(blocked.headers["ratelimit-reset"])
    problem = blocked.json()
    assert problem["type"] == "https://iana.org/assignments/http-problem-types#quota-exceeded"
    assert problem["policy"] == "default"


async def test_rate_limit_headers_also_on_gateway_503() -> None:
    async with gateway_in_process(FakeUpstream(default=503), max_retries=0) as gw:
        answer = await gw.client.get("/api/v1/data")
    assert answer.status_code == 503
    assert answer.headers["ratelimit-remaining"] == "99"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/health"), ("GET", "/metrics"), ("GET", "/nope"), ("PUT", "/api/v1/data")],
)
async def test_every_response_carries_a_request_id(method: str, path: str) -> None:
    async with gateway_in_process() as gw:
        answer = await gw.client.request(method, path)
    assert len(answer.headers["x-request-id"]) == 32


async def test_503_problem_carries_breaker_state_and_retry_after() -> None:
    async with gateway_in_process(
        FakeUpstream(default=503), failure_threshold=1, recovery_timeout_seconds=12
    ) as gw:
        await gw.client.get("/api/v1/data")
        answer = await gw.client.get("/api/v1/data")
    problem = answer.json()
    assert problem["circuit_breaker_state"] == "OPEN"
    assert problem["retry_after"] == 12
    assert answer.headers["retry-after"] == "12"
    assert set(problem) >= {"type", "title", "status", "detail", "instance"}
