"""The dashboard's event stream as an ASGI app: frames, heartbeats, the cap, and its ends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from adapters.clock.fake import FakeClock, let_other_tasks_run
from adapters.dashboard.snapshot import DashboardRoute, SnapshotBuilder
from adapters.dashboard.stream import HEARTBEAT, DashboardHub, EventStream
from adapters.event_log import EventLog
from adapters.metrics.counters import HttpMetrics, RouteCounters
from domain.breaker import BreakerPolicy, CircuitBreaker


def new_hub(clock: FakeClock, http: HttpMetrics, max_streams: int = 2) -> DashboardHub:
    route = DashboardRoute(
        "default", "backend", RouteCounters("default"), CircuitBreaker(BreakerPolicy(), clock), None
    )
    builder = SnapshotBuilder([route], http, EventLog(), clock, 0.5)
    return DashboardHub(builder, clock, 0.5, max_streams)


class Client:
    """One HTTP client of the endpoint: what it was sent, and a way to hang up."""

    def __init__(self, endpoint: EventStream) -> None:
        self.messages: list[dict[str, Any]] = []
        self._hang_up = asyncio.Event()
        scope = {"type": "http", "method": "GET", "path": "/dashboard/events", "headers": []}
        self.task = asyncio.create_task(endpoint(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        await self._hang_up.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def hang_up(self) -> None:
        self._hang_up.set()

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body"]

    def snapshots(self) -> list[dict[str, Any]]:
        frames = b"".join(self.bodies()).split(b"\n\n")
        return [json.loads(f[len(b"data: ") :]) for f in frames if f.startswith(b"data: ")]


async def test_a_stream_sends_the_newest_snapshot_then_one_per_publish() -> None:
    clock, http = FakeClock(), HttpMetrics()
    hub = new_hub(clock, http)
    hub.publish()
    client = Client(EventStream(hub))
    await let_other_tasks_run()
    assert client.status == 200
    assert client.headers()[b"content-type"].startswith(b"text/event-stream")
    assert client.headers()[b"cache-control"] == b"no-cache"
    assert client.bodies()[0].startswith(b"retry: 1000\n\ndata: {")
    http.request_completed("default", 200, 0.01)
    clock.advance(0.5)
    hub.publish()
    await let_other_tasks_run()
    assert [s["routes"]["default"]["rolling"]["requests"] for s in client.snapshots()] == [0, 1]
    client.hang_up()
    await client.task


async def test_an_unchanged_snapshot_is_a_heartbeat_comment() -> None:
    clock, http = FakeClock(), HttpMetrics()
    hub = new_hub(clock, http)
    hub.publish()
    client = Client(EventStream(hub))
    await let_other_tasks_run()
    hub.publish()  # nothing happened: the same snapshot
    await let_other_tasks_run()
    assert client.bodies()[-1] == HEARTBEAT
    client.hang_up()
    await client.task


async def test_streams_past_the_cap_get_a_503_problem_and_a_hang_up_frees_a_place() -> None:
    hub = new_hub(FakeClock(), HttpMetrics(), max_streams=2)
    hub.publish()
    endpoint = EventStream(hub)
    first, second = Client(endpoint), Client(endpoint)
    await let_other_tasks_run()
    third = Client(endpoint)
    await third.task
    assert third.status == 503
    problem = json.loads(third.bodies()[0])
    assert problem["type"] == "urn:resilient-gateway:problem:dashboard-busy"
    assert third.headers()[b"content-type"] == b"application/problem+json"
    first.hang_up()
    await first.task
    assert hub.open_streams == 1
    fourth = Client(endpoint)
    await let_other_tasks_run()
    assert fourth.status == 200
    for client in (second, fourth):
        client.hang_up()
        await client.task
    assert hub.open_streams == 0


async def test_closing_the_hub_ends_every_stream_cleanly_and_refuses_new_ones() -> None:
    hub = new_hub(FakeClock(), HttpMetrics(), max_streams=5)
    await hub.start()
    endpoint = EventStream(hub)
    clients = [Client(endpoint) for _ in range(5)]
    await let_other_tasks_run()
    hub.close()
    await asyncio.wait_for(asyncio.gather(*(c.task for c in clients)), timeout=1)
    for client in clients:
        assert client.messages[-1] == {
            "type": "http.response.body",
            "body": b"",
            "more_body": False,
        }
    late = Client(endpoint)
    await late.task
    assert late.status == 503
    await hub.aclose()


class FlakyBuilder:
    """A snapshot builder whose second snapshot fails."""

    def __init__(self) -> None:
        self.calls = 0

    def build(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("a bug in one snapshot")
        return {"snapshot": self.calls}


async def test_one_failed_snapshot_does_not_stop_the_later_ones() -> None:
    builder = FlakyBuilder()
    hub = DashboardHub(builder, FakeClock(), 0.5, 1)  # type: ignore[arg-type]
    await hub.start()
    await let_other_tasks_run(10)
    await hub.aclose()
    assert builder.calls > 3
    assert hub.frame.startswith(b'data: {"snapshot":')
    assert hub.frame != b'data: {"snapshot":1}\n\n'
