"""Suite-wide fixtures: keep the tests hermetic from the environment they run in.

Inside the gateway's container (``docker-compose exec gateway pytest tests -v``) every gateway
setting is set in the environment; tests that expect defaults must not see those.
"""

from __future__ import annotations

import os
import shutil

import pytest

from gateway.settings import GatewaySettings

SETTING_VARIABLES = {name.upper() for name in GatewaySettings.model_fields}


@pytest.fixture(autouse=True)
def _clean_settings_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper() in SETTING_VARIABLES or name.upper().startswith("FLAKY_"):
            monkeypatch.delenv(name)


def pytest_report_header() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return f"redis: the Redis-adapter tests run against REDIS_URL={url}"
    if shutil.which("redis-server"):
        return "redis: no REDIS_URL; the Redis-adapter tests start a private redis-server"
    return "redis: no REDIS_URL, no redis-server; the Redis-adapter tests run against fakeredis"
