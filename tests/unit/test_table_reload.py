"""The table built from a config, and rebuilt on reload with the state of what did not change.

No sockets, no sleeping: fake upstreams by name, a fake clock, in-memory limiters.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from adapters.backend_client.fake import FakeUpstream
from adapters.clock.fake import FakeClock
from adapters.event_log import EventLog
from adapters.http.client_identity import ClientIdentity
from application.forward import CircuitOpen, Forwarded, RateLimited
from domain.breaker import BreakerState
from domain.errors import UpstreamUnavailable
from domain.ports import UpstreamRequest
from gateway.config import ConfigError, GatewayConfig, UpstreamConfig, load_config, parse_config
from gateway.containers import Limiters
from gateway.routing import GatewayTable, RouteTables, TableDeps, build_table
from gateway.settings import GatewaySettings

SETTINGS = GatewaySettings(_env_file=None)
TWO_UPSTREAMS = """
upstreams:
  users: {url: "http://users:1", circuit_breaker: {failure_threshold: 2}}
  orders: {url: "http://orders:1", circuit_breaker: {failure_threshold: 2}}
routes:
  - {name: users-read, path_prefix: /users, methods: [GET], upstream: users}
  - {name: users-write, path_prefix: /users, methods: [POST], upstream: users}
  - name: orders
    path_prefix: /orders
    upstream: orders
    rate_limit: {requests_per_window: 2, window_seconds: 60}
"""


class ClosableUpstream(FakeUpstream):
    closed = False

    async def aclose(self) -> None:
        self.closed = True


class Upstreams:
    """A fake upstream per name and build: every build of an upstream's client is recorded."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.built: list[tuple[str, FakeUpstream]] = []
        self.closed: list[FakeUpstream] = []

    def __call__(self, name: str, config: UpstreamConfig) -> FakeUpstream:
        upstream = ClosableUpstream(clock=self.clock)
        self.built.append((name, upstream))
        return upstream


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def upstreams(clock: FakeClock) -> Upstreams:
    return Upstreams(clock)


@pytest.fixture
def deps(clock: FakeClock, upstreams: Upstreams) -> TableDeps:
    return TableDeps(
        settings=SETTINGS,
        clock=clock,
        sleeper=clock,
        rng=__import__("random").Random(1),
        events=EventLog(),
        identity=ClientIdentity(),
        upstream_factory=upstreams,
        limiter_factory=Limiters(SETTINGS, clock),
    )


def tables_at(path: Path, text: str, deps: TableDeps) -> RouteTables:
    """The running tables of the file at ``path``, written with ``text``."""
    path.write_text(text)
    return RouteTables(build_table(load_config(path, SETTINGS), deps), deps, str(path))


def config(text: str) -> GatewayConfig:
    return parse_config(textwrap.dedent(text), SETTINGS, "test.yaml")


def route(table: GatewayTable, name: str):  # type: ignore[no-untyped-def]
    return next(each for each in table.routes if each.name == name)


async def call(table: GatewayTable, name: str, method: str = "GET", client: str = "c") -> object:
    return await route(table, name).forward(client, UpstreamRequest(method, "/x"))


async def open_breaker(table: GatewayTable, name: str) -> None:
    upstream = route(table, name).upstream.adapter
    assert isinstance(upstream, FakeUpstream)
    upstream.push(*[UpstreamUnavailable("down")] * 8)
    for _ in range(2):
        await call(table, name)
    assert route(table, name).upstream.breaker.state is BreakerState.OPEN


def test_routes_to_one_upstream_share_its_policies_and_no_one_else_s(deps: TableDeps) -> None:
    table = build_table(config(TWO_UPSTREAMS), deps)
    read, write, orders = (route(table, n) for n in ("users-read", "users-write", "orders"))
    assert read.route.breaker is write.route.breaker
    assert read.route.bulkhead is write.route.bulkhead
    assert read.route.retry_budget is write.route.retry_budget
    assert read.route.upstream is write.route.upstream
    assert orders.route.breaker is not read.route.breaker
    assert orders.route.bulkhead is not read.route.bulkhead
    assert read.limiter is not write.limiter  # the rate limit is the route's own
    assert table.upstreams["users"].counters.routes == ("users-read", "users-write")
    assert [name for name, _ in deps.upstream_factory.built] == ["users", "orders"]  # type: ignore[attr-defined]


async def test_a_dead_upstream_opens_its_breaker_only(deps: TableDeps) -> None:
    table = build_table(config(TWO_UPSTREAMS), deps)
    await open_breaker(table, "users-read")
    assert isinstance(await call(table, "users-write", "POST"), CircuitOpen)
    assert isinstance(await call(table, "orders"), Forwarded)
    assert table.upstreams["orders"].breaker.state is BreakerState.CLOSED


async def test_a_reload_keeps_the_state_of_everything_whose_policy_did_not_change(
    deps: TableDeps,
) -> None:
    first = build_table(config(TWO_UPSTREAMS), deps)
    await open_breaker(first, "users-read")
    for _ in range(2):
        await call(first, "orders")
    assert isinstance(await call(first, "orders"), RateLimited)

    # a new route, and a new timeout for orders: nothing of users or of orders' limit changes
    changed = (
        TWO_UPSTREAMS.replace(
            'orders: {url: "http://orders:1",',
            'orders: {url: "http://orders:1", timeout_seconds: 1,',
        )
        + "  - {name: extra, path: /extra, upstream: users}\n"
    )
    second = build_table(config(changed), deps, first)

    assert second.version == first.version + 1
    assert second.upstreams["users"].breaker is first.upstreams["users"].breaker
    assert second.upstreams["users"].breaker.state is BreakerState.OPEN
    assert isinstance(await call(second, "extra"), CircuitOpen)  # the new route shares it
    assert second.upstreams["users"].adapter is first.upstreams["users"].adapter
    assert second.upstreams["orders"].adapter is first.upstreams["orders"].adapter
    assert route(second, "orders").limiter is route(first, "orders").limiter
    assert isinstance(await call(second, "orders"), RateLimited)  # its window kept its count
    assert route(second, "orders").counters is route(first, "orders").counters
    assert route(second, "orders").route.attempt_timeout_seconds == 1
    assert second.retired == []


async def test_a_changed_policy_starts_afresh_and_a_changed_url_gets_a_new_client(
    deps: TableDeps,
) -> None:
    first = build_table(config(TWO_UPSTREAMS), deps)
    await open_breaker(first, "users-read")
    for _ in range(2):
        await call(first, "orders")
    changed = (
        TWO_UPSTREAMS.replace(
            "{failure_threshold: 2}}\n  orders", "{failure_threshold: 3}}\n  orders"
        )
        .replace("http://orders:1", "http://orders:2")
        .replace("requests_per_window: 2", "requests_per_window: 3")
    )
    second = build_table(config(changed), deps, first)
    users, orders = second.upstreams["users"], second.upstreams["orders"]
    assert users.breaker is not first.upstreams["users"].breaker
    assert users.breaker.state is BreakerState.CLOSED
    assert users.breaker.policy.failure_threshold == 3
    assert users.adapter is first.upstreams["users"].adapter  # same URL: same pool
    assert users.bulkhead is first.upstreams["users"].bulkhead
    assert orders.adapter is not first.upstreams["orders"].adapter
    assert orders.breaker is first.upstreams["orders"].breaker  # its breaker policy is the same
    assert route(second, "orders").limiter is not route(first, "orders").limiter
    assert isinstance(await call(second, "orders"), Forwarded)  # a new window
    assert second.retired == [first.upstreams["orders"].adapter, route(first, "orders").limiter]
    # the transition counters stay with the upstream's name, whatever its breaker
    assert users.counters is first.upstreams["users"].counters


async def test_requests_in_flight_finish_on_the_table_they_started_with(
    deps: TableDeps, tmp_path: Path
) -> None:
    import asyncio

    path = tmp_path / "gateway.yaml"
    tables = tables_at(path, TWO_UPSTREAMS, deps)
    old = tables.table
    upstream = old.upstreams["orders"].adapter
    assert isinstance(upstream, FakeUpstream)
    upstream.gate = asyncio.Event()
    in_flight = asyncio.create_task(call(old, "orders"))
    started = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(started.set_result, None)
    await started  # the request is now waiting on the old table's upstream
    assert upstream.in_flight == 1
    path.write_text(TWO_UPSTREAMS.replace("http://orders:1", "http://orders:2"))
    assert await tables.reload()
    assert tables.table is not old
    assert tables.table.upstreams["orders"].adapter is not upstream
    upstream.gate.set()
    result = await in_flight
    assert isinstance(result, Forwarded)
    assert len(upstream.calls) == 1  # served by the client it started on
    await tables.aclose()


async def test_an_invalid_file_changes_nothing(deps: TableDeps, tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    tables = tables_at(path, TWO_UPSTREAMS, deps)
    before = tables.table
    path.write_text(TWO_UPSTREAMS.replace("window_seconds: 60", "window_seconds: 0"))
    assert not await tables.reload()
    assert tables.table is before
    report = tables.config_report()
    assert report["version"] == 1
    assert report["last_reload"]["result"] == "error"
    assert "routes[2] (orders).rate_limit.window_seconds" in report["last_error"]
    assert tables.reload_counts() == {"success": 0, "error": 1}
    assert [e["kind"] for e in deps.events.recent()] == ["config_reload"]

    path.unlink()
    assert not await tables.reload()
    assert "cannot read config" in tables.config_report()["last_error"]

    path.write_text(TWO_UPSTREAMS)
    assert await tables.reload()
    report = tables.config_report()
    assert (report["version"], report["last_error"]) == (2, None)
    assert tables.reload_counts() == {"success": 1, "error": 2}


async def test_without_a_file_a_reload_is_refused_and_changes_nothing(deps: TableDeps) -> None:
    tables = RouteTables(build_table(config(TWO_UPSTREAMS), deps), deps, None)
    before = tables.table
    assert not await tables.reload()
    assert tables.table is before
    assert tables.config_report()["source"] == "environment"


def test_a_config_error_is_an_exception_with_one_line() -> None:
    with pytest.raises(ConfigError):
        config("upstreams: {}\nroutes: []")


async def test_what_a_reload_dropped_is_closed_at_shutdown_at_the_latest(
    deps: TableDeps, tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    tables = tables_at(path, TWO_UPSTREAMS, deps)
    dropped = tables.table.upstreams["orders"].adapter
    kept = tables.table.upstreams["users"].adapter
    assert isinstance(dropped, ClosableUpstream)
    assert isinstance(kept, ClosableUpstream)
    path.write_text(TWO_UPSTREAMS.replace("http://orders:1", "http://orders:2"))
    assert await tables.reload()
    assert not dropped.closed  # requests that started before the reload may still use it
    await tables.aclose()
    assert dropped.closed
    assert kept.closed
