"""The installable test kit, used the way a user would: only the plugin's public fixtures.

Nothing here imports the gateway's internals or a conftest: ``fake_clock``, ``fake_upstream``,
``gateway_client`` and ``gateway_settings`` come from the ``pytest11`` entry point, and the
outcomes a user scripts come from ``gateway.testing``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.testing import Delayed, FakeClock, FakeUpstream, UpstreamTimeout

pytest_plugins = ["pytester"]


@pytest.mark.gateway_settings(max_retries=0)
async def test_five_503s_open_my_breaker_and_30_s_later_one_trial_closes_it(
    gateway_client: httpx.AsyncClient, fake_upstream: FakeUpstream, fake_clock: FakeClock
) -> None:
    fake_upstream.push(503, 503, 503, 503, 503)
    for _ in range(5):
        assert (await gateway_client.get("/api/v1/data")).status_code == 503
    refused = await gateway_client.get("/api/v1/data")
    assert refused.json()["type"].endswith(":circuit-open")
    assert refused.headers["retry-after"] == "30"
    assert len(fake_upstream.requests) == 5

    fake_clock.advance(30)
    assert (await gateway_client.get("/api/v1/data")).status_code == 200
    assert (await gateway_client.get("/metrics")).json()["circuit_breaker_state"] == "CLOSED"
    assert len(fake_upstream.requests) == 6


async def test_retries_wait_in_fake_time(
    gateway_client: httpx.AsyncClient, fake_upstream: FakeUpstream, fake_clock: FakeClock
) -> None:
    fake_upstream.push(503, 503)
    answer = await gateway_client.get("/api/v1/data?item=7")
    assert answer.status_code == 200
    assert fake_clock.sleeps == [0.5, 1.0]  # the default backoff, and no real second passed
    assert [request.query for request in fake_upstream.requests] == ["item=7"] * 3


@pytest.mark.gateway_settings(BACKEND_TIMEOUT_SECONDS="1.5", MAX_RETRIES="1")
async def test_a_delayed_answer_past_the_timeout_is_a_timeout(
    gateway_client: httpx.AsyncClient, fake_upstream: FakeUpstream, fake_clock: FakeClock
) -> None:
    fake_upstream.push(Delayed(200, 5.0), Delayed(200, 1.0))
    start = fake_clock.now()
    assert (await gateway_client.get("/api/v1/data")).status_code == 200
    assert fake_clock.now() - start == 1.5 + 0.5 + 1.0  # a cut attempt, the backoff, the answer


@pytest.mark.gateway_settings(max_retries=0)
async def test_a_raised_upstream_error_is_a_503_problem(
    gateway_client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.push(UpstreamTimeout("scripted"))
    answer = await gateway_client.get("/api/v1/data")
    assert answer.status_code == 503
    assert answer.json()["reason"] == "timeout"


@pytest.mark.gateway_settings(
    breaker_mode="failure_rate", minimum_calls=4, sliding_window_size=4, max_retries=0
)
async def test_my_failure_rate_breaker_waits_for_the_minimum_calls(
    gateway_client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.push(503, 200, 503)
    for _ in range(3):
        await gateway_client.get("/api/v1/data")
    assert (await gateway_client.get("/metrics")).json()["circuit_breaker_state"] == "CLOSED"
    fake_upstream.push(503)
    await gateway_client.get("/api/v1/data")
    assert (await gateway_client.get("/metrics")).json()["circuit_breaker_state"] == "OPEN"


class TestTheEnvironmentIsNotRead:
    @pytest.fixture
    def gateway_settings(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
        monkeypatch.setenv("RATE_LIMIT_REQUESTS_PER_WINDOW", "1")
        return {}

    async def test_a_variable_set_on_the_machine_changes_nothing(
        self, gateway_client: httpx.AsyncClient
    ) -> None:
        statuses = [(await gateway_client.get("/api/v1/data")).status_code for _ in range(2)]
        assert statuses == [200, 200]


class TestSettingsFromAnOverriddenFixture:
    @pytest.fixture
    def gateway_settings(self) -> dict[str, Any]:
        return {"rate_limit_requests_per_window": 2}

    async def test_my_limit_of_two_answers_the_third_with_429(
        self, gateway_client: httpx.AsyncClient
    ) -> None:
        statuses = [(await gateway_client.get("/api/v1/data")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]


def test_the_fixtures_need_no_conftest_and_no_import(pytester: pytest.Pytester) -> None:
    """A fresh project that only has the package installed gets the fixtures."""
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_mine="""
        import pytest

        @pytest.mark.gateway_settings(FAILURE_THRESHOLD="2", MAX_RETRIES="0")
        async def test_two_failures_open_it(gateway_client, fake_upstream):
            fake_upstream.push(503, 503)
            for _ in range(2):
                await gateway_client.get("/api/v1/data")
            answer = await gateway_client.get("/api/v1/data")
            assert answer.status_code == 503
            assert len(fake_upstream.requests) == 2

        @pytest.mark.gateway_settings(FAILURE_THRESHOLD="-1")
        async def test_bad_settings_fail_with_one_line(gateway_client):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*gateway_settings: invalid setting FAILURE_THRESHOLD=-1*"])


MY_ROUTES = """
upstreams:
  users: {url: "http://users.internal:8080", circuit_breaker: {failure_threshold: 2}}
  orders: {url: "http://orders.internal:8080"}
routes:
  - name: users
    path_prefix: /api/users
    rewrite_prefix: /v2/users
    upstream: users
    retry: {max_retries: 0}
  - name: orders
    path: /api/orders
    methods: [GET, POST]
    upstream: orders
    rate_limit: {requests_per_window: 1, window_seconds: 60, key: "header:X-API-Key"}
"""


class TestMyOwnRouteTable:
    """A user's own file, loaded against a fake upstream per name and the fake clock."""

    @pytest.fixture
    def gateway_config(self, tmp_path: Any) -> Any:
        path = tmp_path / "gateway.yaml"
        path.write_text(MY_ROUTES)
        return path

    async def test_my_prefix_is_rewritten_and_my_upstreams_are_apart(
        self, gateway_client: httpx.AsyncClient, fake_upstreams: Any
    ) -> None:
        fake_upstreams["users"].push(503, 503)
        for _ in range(2):
            await gateway_client.get("/api/users/7?full=1")
        assert (await gateway_client.get("/api/users/7")).json()["type"].endswith(":circuit-open")
        assert (await gateway_client.post("/api/orders", content=b"{}")).status_code == 200
        assert [r.path for r in fake_upstreams["users"].requests] == ["/v2/users/7"] * 2
        assert fake_upstreams["users"].requests[0].query == "full=1"
        assert [r.method for r in fake_upstreams["orders"].requests] == ["POST"]
        metrics = (await gateway_client.get("/metrics")).json()
        assert metrics["upstreams"]["users"]["circuit_breaker_state"] == "OPEN"
        assert metrics["upstreams"]["orders"]["circuit_breaker_state"] == "CLOSED"

    async def test_my_limit_counts_each_api_key(self, gateway_client: httpx.AsyncClient) -> None:
        def get(key: str) -> Any:
            return gateway_client.get("/api/orders", headers={"X-API-Key": key})

        assert [(await get(key)).status_code for key in ("a", "a", "b")] == [200, 429, 200]


def test_a_config_file_by_marker_and_its_errors(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makefile(".yaml", good=MY_ROUTES)
    pytester.makefile(
        ".yaml", bad=MY_ROUTES.replace("failure_threshold: 2", "failure_threshold: 0")
    )
    pytester.makepyfile(
        test_mine="""
        import pytest

        @pytest.mark.gateway_config("good.yaml")
        async def test_routes(gateway_client, fake_upstreams):
            assert (await gateway_client.get("/api/users")).status_code == 200
            assert fake_upstreams["users"].requests[0].path == "/v2/users"

        @pytest.mark.gateway_config("bad.yaml")
        async def test_bad(gateway_client):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*gateway_config: invalid config *bad.yaml: upstreams.users.circuit_breaker.failure_th*"]
    )
