"""The dashboard over real sockets: the page, the stream's headers and interval, its cap, and a
shutdown that does not wait on open streams."""

from __future__ import annotations

import itertools
import re
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest

from tests.integration.conftest import gateway_in_process

pytestmark = pytest.mark.integration


async def test_the_page_is_one_self_contained_html_document() -> None:
    async with gateway_in_process() as gw:
        answer = await gw.client.get("/dashboard")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert "dashboard/events" in page
    assert "EventSource" in page
    # Nothing is loaded from anywhere else: no external scripts, styles, fonts or images.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"""url\(\s*["']?(https?:)?//""", page)
    assert not re.search(r"@import", page)


async def test_the_dashboard_can_be_turned_off() -> None:
    async with gateway_in_process(dashboard_enabled=False) as gw:
        page = await gw.client.get("/dashboard")
        events = await gw.client.get("/dashboard/events")
    assert (page.status_code, events.status_code) == (404, 404)


@contextmanager
def open_stream(url: str) -> Iterator[httpx.Response]:
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", f"{url}/dashboard/events") as response,
    ):
        yield response


def frames(response: httpx.Response) -> Iterator[tuple[float, str]]:
    """Each SSE frame (a data line or a comment) with the time it arrived."""
    buffer = ""
    for chunk in response.iter_text():
        buffer += chunk
        while "\n\n" in buffer:
            frame, buffer = buffer.split("\n\n", 1)
            yield time.monotonic(), frame


def test_the_stream_is_an_event_stream_with_one_frame_per_interval(
    pair: Callable[..., Any],
) -> None:
    with pair(DASHBOARD_INTERVAL_SECONDS="0.2") as (gateway, _), open_stream(gateway.url) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        arrivals: list[float] = []
        kinds: list[str] = []
        for arrived, frame in frames(stream):
            if frame.startswith("retry:"):  # the reconnection delay, sent first
                continue
            kinds.append("data" if frame.startswith("data: ") else frame)
            arrivals.append(arrived)
            if len(arrivals) == 3:
                httpx.get(f"{gateway.url}/api/v1/data")
            if len(arrivals) == 16:
                break
    gaps = [b - a for a, b in itertools.pairwise(arrivals[1:])]  # the first frame came at once
    assert 0.15 <= statistics.median(gaps) <= 0.3, gaps
    assert kinds[0] == "data"
    assert ": heartbeat" in kinds  # an idle gateway: nothing new to send
    assert kinds.count("data") >= 2  # the request made a new snapshot


def test_at_most_max_streams_are_open_and_one_more_gets_a_503_problem(
    pair: Callable[..., Any],
) -> None:
    with pair(DASHBOARD_MAX_STREAMS="2") as (gateway, _), ExitStack() as streams:
        first = streams.enter_context(open_stream(gateway.url))
        second = streams.enter_context(open_stream(gateway.url))
        assert (first.status_code, second.status_code) == (200, 200)
        refused = httpx.get(f"{gateway.url}/dashboard/events", timeout=5)
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "urn:resilient-gateway:problem:dashboard-busy"
        assert "retry-after" in refused.headers
        prometheus = httpx.get(f"{gateway.url}/metrics", headers={"Accept": "text/plain"}).text
        assert 'route="/dashboard/events",status_class="5xx",upstream=""} 1.0' in prometheus
        first.close()
        # The gateway notices the hang-up at once; a new stream then gets the free place.
        deadline = time.monotonic() + 5
        while True:
            with open_stream(gateway.url) as third:
                if third.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the closed stream's place was never freed"
            time.sleep(0.05)


def test_a_gateway_with_five_open_dashboards_shuts_down_at_once(
    pair: Callable[..., Any],
) -> None:
    # The drain time is REQUEST_TIMEOUT_SECONDS + 1 = 31 s: waiting on the streams would show.
    with pair(REQUEST_TIMEOUT_SECONDS="30") as (gateway, _):
        ended: list[str] = []
        opened = threading.Barrier(6)

        def watch() -> None:
            with open_stream(gateway.url) as stream:
                assert stream.status_code == 200
                opened.wait(timeout=10)
                try:
                    for _ in stream.iter_bytes():
                        pass
                    ended.append("clean")
                except httpx.HTTPError as error:
                    ended.append(f"broken: {error!r}")

        watchers = [threading.Thread(target=watch) for _ in range(5)]
        for watcher in watchers:
            watcher.start()
        opened.wait(timeout=10)
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        exit_code = gateway.process.wait(timeout=31)
        took = time.monotonic() - started
        for watcher in watchers:
            watcher.join(timeout=5)
    assert exit_code == 0
    assert took < 10.0, f"shutdown took {took:.1f} s"  # waiting on the streams would take 31 s
    assert ended == ["clean"] * 5
    assert "timeout graceful shutdown exceeded" not in gateway.log()


async def test_dashboard_requests_are_counted_under_their_own_labels() -> None:
    async with gateway_in_process() as gw:
        await gw.client.get("/dashboard")
        metrics = gw.container.http_metrics()
        assert metrics.stats("/dashboard").by_status_class[2] == 1
        assert "unmatched" not in metrics.by_route
