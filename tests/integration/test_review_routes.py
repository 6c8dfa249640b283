"""Review of the route table (branch review-12): each test shows one finding and fails today.

Most run the real app and wiring in process (a config file, fake upstreams, a fake clock); the
last runs the gateway and an echo upstream as processes.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from dependency_injector import providers

from adapters.backend_client.fake import FakeUpstream
from adapters.clock.fake import FakeClock
from gateway.config import ConfigError, parse_config
from gateway.containers import Container, every_upstream
from gateway.settings import GatewaySettings
from tests.integration.test_routes_real import gateway, write_config

PROBLEM = "application/problem+json"


@dataclass
class ConfiguredGateway:
    client: httpx.AsyncClient
    upstream: FakeUpstream
    container: Container
    path: Path


@asynccontextmanager
async def configured_gateway(tmp_path: Path, text: str) -> AsyncIterator[ConfiguredGateway]:
    """The real app serving the config file ``text`` (reloadable), every upstream one fake."""
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    settings = GatewaySettings(_env_file=None, gateway_config=str(path))  # type: ignore[call-arg]
    upstream = FakeUpstream()
    container = Container()
    container.settings.override(providers.Object(settings))
    container.clock.override(providers.Object(FakeClock()))
    container.upstream_factory.override(providers.Object(every_upstream(upstream)))
    app = container.app()
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("203.0.113.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield ConfiguredGateway(client, upstream, container, path)


def keyed(header: str) -> str:
    return f"""
upstreams: {{a: {{url: "http://a:1"}}}}
routes:
  - name: r
    path: /x
    upstream: a
    rate_limit: {{key: "header:{header}", requests_per_window: 1, window_seconds: 60}}
"""


# --- the rate-limit key ---------------------------------------------------------------------


async def test_an_api_key_sent_twice_is_not_a_fresh_limit(tmp_path: Path) -> None:
    """``X-API-Key: A`` plus ``X-API-Key: <anything>``: the limiter counts the last value, the
    upstream gets both and most frameworks authenticate the first. A client with one valid key
    so gets an unlimited rate (a fresh second value per request), or spends someone else's
    window (their key as the second value). proxy.py: ``if name == key_header: key_value =
    value`` keeps the last of several."""
    async with configured_gateway(tmp_path, keyed("X-API-Key")) as gw:
        answers = [
            await gw.client.get("/x", headers=[("X-API-Key", "A"), ("X-API-Key", f"junk-{n}")])
            for n in range(3)
        ]
    statuses = [answer.status_code for answer in answers]
    assert statuses[0] in (200, 400), statuses
    assert all(status in (400, 429) for status in statuses[1:]), statuses
    assert len(gw.upstream.calls) <= 1


async def test_a_key_header_the_gateway_drops_is_refused_or_counted(tmp_path: Path) -> None:
    """``header:X-Real-IP`` (X-Forwarded-For, Forwarded, any X-Forwarded-*, Host...) validates,
    but ProxyEndpoint skips those fields before it compares names with the key header: every
    request silently counts by the client address instead."""
    text = keyed("X-Real-IP")
    try:
        parse_config(text, GatewaySettings(_env_file=None), "review.yaml")
    except ConfigError:
        return  # refused with its one line: fine
    async with configured_gateway(tmp_path, text) as gw:
        first = await gw.client.get("/x", headers={"X-Real-IP": "one"})
        second = await gw.client.get("/x", headers={"X-Real-IP": "two"})
    assert (first.status_code, second.status_code) == (200, 200)


# --- labels ---------------------------------------------------------------------------------

TWO_ROUTES = """
upstreams: {a: {url: "http://a:1"}}
routes:
  - {name: x, path: /x, methods: [GET], upstream: a}
  - {name: y, path: /y, methods: [GET], upstream: a}
"""


async def test_a_route_named_unmatched_does_not_count_every_unknown_path(tmp_path: Path) -> None:
    """``unmatched`` fits NAME_PATTERN, and it is also the label of every request no route
    takes (``context.route_label``): the route's ``requests_by_status_class`` (JSON and
    Prometheus) then counts every 404 of the gateway."""
    text = TWO_ROUTES.replace("name: y", "name: unmatched")
    try:
        parse_config(text, GatewaySettings(_env_file=None), "review.yaml")
    except ConfigError:
        return
    async with configured_gateway(tmp_path, text) as gw:
        for n in range(3):
            assert (await gw.client.get(f"/nothing-{n}")).status_code == 404
        report = (await gw.client.get("/metrics")).json()
    assert report["routes"]["unmatched"]["requests_by_status_class"] == {}


async def test_a_405_on_a_routes_path_is_not_counted_as_unmatched(tmp_path: Path) -> None:
    """README: "a path no route takes is route="unmatched"". A wrong method on a route's path
    is answered by ProxyRoutes without a route in the context, so it is labelled ``unmatched``
    too (before the table, FastAPI's 405 had the path's label, ``/api/v1/data``)."""
    async with configured_gateway(tmp_path, TWO_ROUTES) as gw:
        answer = await gw.client.post("/x")
        metrics = gw.container.http_metrics()
    assert answer.status_code == 405
    assert "unmatched" not in metrics.by_route


# --- reload ---------------------------------------------------------------------------------


async def test_a_path_a_reload_removed_is_a_404_whatever_the_method(tmp_path: Path) -> None:
    """After a reload without route ``x``, ``/x`` falls through ProxyRoutes to FastAPI, where
    ``x`` is still registered (for OpenAPI) with its old methods: ``GET /x`` is a 404 naming the
    removed route, but ``POST /x`` is a 405 ``Allow: GET`` for a route that no longer exists
    (and ``/openapi.json`` still documents it)."""
    async with configured_gateway(tmp_path, TWO_ROUTES) as gw:
        gw.path.write_text(
            TWO_ROUTES.replace("  - {name: x, path: /x, methods: [GET], upstream: a}\n", "")
        )
        assert await gw.container.tables().reload()
        get = await gw.client.get("/x")
        post = await gw.client.post("/x")
    assert get.status_code == 404
    assert post.status_code == 404, (post.status_code, post.headers.get("allow"))


# --- a reload and a long answer, for real ------------------------------------------------------


@pytest.mark.integration
def test_a_reload_does_not_cut_an_event_stream_that_started_before_it(
    tmp_path: Path, echo_pair: tuple[str, str]
) -> None:
    """README: "Requests in flight finish on the table they started with". A reload that
    changes an upstream's pool (here ``pool_size``) retires its client, and ``_close_later``
    closes it ``max(request_timeout_seconds) + 1`` s later, whatever still uses it: an event
    stream (which the README says may last as long as it keeps talking) or any streamed answer
    is cut mid-way, 2 s after the SIGHUP here."""
    alpha, _ = echo_pair
    upstream = {"url": alpha, "timeout_seconds": 1}
    route = {
        "name": "events",
        "path_prefix": "/events",
        "rewrite_prefix": "",
        "upstream": "events",
        "request_timeout_seconds": 1,
        "retry": {"max_retries": 0},
    }
    config: dict[str, Any] = {"upstreams": {"events": upstream}, "routes": [route]}
    events: list[int] = []
    with gateway(tmp_path, config) as (gw, _), httpx.Client(timeout=10) as client:
        params = {"events": 8, "interval": 0.5}
        with client.stream("GET", f"{gw.url}/events/_sse", params=params) as answer:
            assert answer.status_code == 200
            pending = b""
            try:
                for chunk in answer.iter_raw():
                    pending += chunk
                    while b"\n\n" in pending:
                        event, pending = pending.split(b"\n\n", 1)
                        events.append(json.loads(event[len(b"data: ") :])["i"])
                        if len(events) == 1:
                            changed = {**upstream, "pool_size": 7}
                            write_config(
                                tmp_path, {"upstreams": {"events": changed}, "routes": [route]}
                            )
                            gw.process.send_signal(signal.SIGHUP)
                            reloaded_at = time.monotonic()
            except httpx.HTTPError:
                pass  # the cut: the events that arrived say when
        assert events, "no event arrived"
        elapsed = time.monotonic() - reloaded_at
    assert events == list(range(8)), f"cut {elapsed:.1f} s after the reload: {events}"


async def test_a_stripped_prefix_never_sends_a_path_that_starts_with_two_slashes(
    tmp_path: Path,
) -> None:
    """``/x//evil.example/y`` with ``rewrite_prefix: ""`` would go upstream as
    ``//evil.example/y``, which some servers and frameworks read as a host (an open redirect
    in the making): the leading slashes are made one."""
    text = """
upstreams: {a: {url: "http://a:1"}}
routes:
  - {name: x, path_prefix: /x, rewrite_prefix: "", upstream: a}
"""
    async with configured_gateway(tmp_path, text) as gw:
        assert (await gw.client.get("/x//evil.example/y")).status_code == 200
        assert (await gw.client.get("/x/ok")).status_code == 200
    assert [call.path for call, _ in gw.upstream.calls] == ["/evil.example/y", "/ok"]
