"""A misbehaving upstream, through a real gateway process, once per upstream client.

For each case of ``hostile_upstream`` the client must get the stated answer, while the gateway's
resident memory (``VmRSS`` from ``/proc``) stays within 50 MB of its baseline during and after
every case, and ``/health`` keeps answering in under 100 ms throughout (probed every 20 ms on
its own connection while the case runs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Service, service

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
RSS_MARGIN = 50 * MiB
HEALTH_LIMIT_SECONDS = 0.1
BODY_LIMIT = 64 * MiB


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Watch:
    """Samples the gateway's RSS and /health latency on background threads."""

    pid: int
    health_url: str
    peak_rss: int = 0
    slowest_health: float = 0.0
    health_failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Watch:
        self._threads = [
            threading.Thread(target=self._sample_rss, daemon=True),
            threading.Thread(target=self._probe_health, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _sample_rss(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_rss = max(self.peak_rss, rss_bytes(self.pid))

    def _probe_health(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.wait(0.02):
                started = time.perf_counter()
                try:
                    status = client.get(self.health_url).status_code
                except httpx.HTTPError as error:
                    self.health_failures.append(repr(error))
                    continue
                self.slowest_health = max(self.slowest_health, time.perf_counter() - started)
                if status != 200:
                    self.health_failures.append(str(status))


@pytest.fixture(scope="module", params=["httptools", "aiohttp", "httpx"])
def gateway(
    request: pytest.FixtureRequest,
    hostile_upstream: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    env = {
        "BACKEND_URL": hostile_upstream,
        "UPSTREAM_CLIENT": str(request.param),
        "BACKEND_TIMEOUT_SECONDS": "1.0",
        "MAX_RETRIES": "0",
        "FAILURE_THRESHOLD": "10000",
        "RATE_LIMIT_ENABLED": "false",
        "MAX_UPSTREAM_BODY_BYTES": str(BODY_LIMIT),
        "LOG_LEVEL": "WARNING",
    }
    with service("resilient-gateway", env, tmp_path_factory.mktemp("gateway")) as gateway:
        with httpx.Client() as client:  # warm up: every code path that allocates once
            for case in ("ok", "echo", "large", "status-999"):
                client.get(f"{gateway.url}/api/v1/data", params={"case": case})
        yield gateway


BAD_ANSWERS = [
    "huge-declared",
    "status-999",
    "switch-101",
    "flood-102",
    "many-headers",
    "long-header",
    "duplicate-length",
    "length-and-chunked",
]


def run_case(gateway: Service, case: str) -> tuple[int, bytes, dict[str, str], str | None]:
    """Status, body, headers and the error (if the stream broke) the client saw."""
    received = bytearray()
    error = None
    url = f"{gateway.url}/api/v1/data"
    with (
        httpx.Client(timeout=30.0) as client,
        client.stream("GET", url, params={"case": case}) as answer,
    ):
        try:
            for chunk in answer.iter_raw():
                received += chunk
        except httpx.HTTPError as broken:
            error = type(broken).__name__
        return answer.status_code, bytes(received), dict(answer.headers), error


@pytest.mark.parametrize(
    "case",
    [
        *BAD_ANSWERS,
        "large",
        "endless-chunked",
        "endless-until-close",
        "trickle-head",
        "trickle-body",
        "trailers",
    ],
)
def test_hostile_answers_are_bounded(gateway: Service, case: str) -> None:
    baseline = rss_bytes(gateway.process.pid)
    with Watch(gateway.process.pid, f"{gateway.url}/health") as watch:
        status, body, headers, error = run_case(gateway, case)
        time.sleep(0.3)  # what the case left behind has settled
    after = rss_bytes(gateway.process.pid)

    if case in BAD_ANSWERS:
        assert status == 502, body[:300]
        assert headers["content-type"] == "application/problem+json"
    elif case == "large":
        assert (status, len(body), error) == (200, 48 * MiB, None)
    elif case.startswith("endless"):
        # The head went out before the limit was reached: the stream is cut, never completed.
        assert status == 200
        assert error is not None
        assert BODY_LIMIT - 2 * MiB <= len(body) <= BODY_LIMIT
    elif case.startswith("trickle"):
        assert status == 503
        assert b'"reason":"timeout"' in body
    else:  # trailers
        assert (status, body) == (200, b"hello")
        assert "x-trailer-secret" not in headers
    assert watch.peak_rss - baseline < RSS_MARGIN, f"peak {watch.peak_rss - baseline} over"
    assert after - baseline < RSS_MARGIN, f"after {after - baseline} over"
    assert watch.health_failures == []
    assert watch.slowest_health < HEALTH_LIMIT_SECONDS


def test_memory_returns_after_many_large_answers(gateway: Service) -> None:
    baseline = rss_bytes(gateway.process.pid)
    for _ in range(3):
        status, body, _, _ = run_case(gateway, "large")
        assert (status, len(body)) == (200, 48 * MiB)
        run_case(gateway, "endless-chunked")
    with httpx.Client() as client:
        for _ in range(300):
            client.get(f"{gateway.url}/api/v1/data", params={"case": "ok"})
    assert rss_bytes(gateway.process.pid) - baseline < RSS_MARGIN
