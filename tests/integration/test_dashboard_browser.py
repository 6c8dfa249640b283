"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against the real pair.

Skipped only where it cannot run and nobody expects it to: without /usr/bin/chromium *and*
outside CI (the project's Docker image has no browser). In CI (``CI`` set) a missing chromium or
Playwright fails the test, so a broken dashboard can never pass as a skipped one. Playwright's own
browser download is never used: ``.ci/run`` installs Debian's chromium (``make browser``).

Screenshots go to ``TEST_ARTIFACTS_DIR`` (default ``test-artifacts/`` at the repository root);
``docs/dashboard.png`` in the README is one of them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import free_port, service

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
RECOVERY_SECONDS = 2.0
RATE_RISE = 10.0
"""Requests per second the figure must rise by under load (idle, it shows well under 1)."""


def artifacts_dir() -> Path:
    directory = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "test-artifacts"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def browser_page() -> Any:
    if not CHROMIUM.exists() and not os.environ.get("CI"):
        pytest.skip("no /usr/bin/chromium here (CI installs it and runs this test)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            yield page
        finally:
            browser.close()


def rate_shown(page: Any) -> float:
    return float(page.locator("#upstream-backend .rate").inner_text())


def test_the_dashboard_shows_the_breaker_open_and_close_and_the_rate_rise_live(
    pair: Callable[..., Any], browser_page: Any
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    settings = {
        "FAILURE_THRESHOLD": "3",
        "RECOVERY_TIMEOUT_SECONDS": str(RECOVERY_SECONDS),
        "BACKEND_TIMEOUT_SECONDS": "1",
        "MAX_RETRIES": "0",
        "RATE_LIMIT_ENABLED": "false",
    }
    with pair(**settings) as (gateway, backend), httpx.Client(timeout=5) as client:
        page.goto(f"{gateway.url}/dashboard")
        badge = page.locator("#upstream-backend [data-testid=breaker-state]")
        expect(badge).to_have_text("CLOSED", timeout=5000)
        expect(page.locator("#connection")).to_have_text("live")
        api = f"{gateway.url}/api/v1/data"
        assert client.get(api).status_code == 200

        # The backend fails everything: after a few requests the badge reads OPEN, no reload.
        client.put(f"{backend.url}/chaos", json={"failure_rate": 1})
        statuses = [client.get(api).status_code for _ in range(4)]
        assert statuses[-1] == 503
        opened_at = time.monotonic()
        expect(badge).to_have_text("OPEN", timeout=3000)
        assert time.monotonic() - opened_at < 3.0
        expect(page.locator("#upstream-backend .countdown")).to_contain_text("HALF_OPEN in")
        expect(page.locator("#events li").first).to_contain_text("CLOSED → OPEN")

        # The backend recovers; after the recovery timeout one good request closes the breaker.
        client.delete(f"{backend.url}/chaos")
        time.sleep(RECOVERY_SECONDS + 0.2)
        assert client.get(api).status_code == 200
        expect(badge).to_have_text("CLOSED", timeout=3000)
        expect(page.locator("#events li").first).to_contain_text("HALF_OPEN → CLOSED")

        # The request-rate figure rises while a background load runs.
        before = rate_shown(page)
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=5) as loader:
                deadline = time.monotonic() + 8
                while not stop.is_set() and time.monotonic() < deadline:
                    loader.get(api)

        loaders = [threading.Thread(target=load) for _ in range(2)]
        for loader in loaders:
            loader.start()
        try:
            highest = before
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and highest < before + RATE_RISE:
                page.wait_for_timeout(250)
                highest = max(highest, rate_shown(page))
            page.wait_for_timeout(2000)  # a few seconds of load on the sparkline
            page.screenshot(path=str(artifacts_dir() / "dashboard.png"), full_page=True)
        finally:
            stop.set()
            for loader in loaders:
                loader.join()
        assert highest >= before + RATE_RISE, (before, highest)

        # On a phone's width nothing runs off the side of the page.
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(artifacts_dir() / "dashboard-phone.png"), full_page=True)


def test_the_page_reconnects_by_itself_when_the_gateway_restarts(
    tmp_path: Path, browser_page: Any
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    port = free_port()
    backend_env = {"FLAKY_FAILURE_RATE": "0", "FLAKY_SLOW_RATE": "0"}
    with service("flaky-backend", backend_env, tmp_path) as backend:
        gateway_env = {"BACKEND_URL": backend.url}
        with service("resilient-gateway", gateway_env, tmp_path, port=port) as gateway:
            page.goto(f"{gateway.url}/dashboard")
            expect(page.locator("#connection")).to_have_text("live", timeout=5000)
        expect(page.locator("#connection")).not_to_have_text("live", timeout=5000)
        with service("resilient-gateway", gateway_env, tmp_path, port=port) as gateway:
            # The page's own retries wait at most 10 s between two tries.
            expect(page.locator("#connection")).to_have_text("live", timeout=15000)
            assert httpx.get(f"{gateway.url}/api/v1/data").status_code == 200
            requests = page.locator("#upstream-backend .count-success")
            expect(requests).to_have_text("1", timeout=3000)
