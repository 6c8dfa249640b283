"""Suite-wide fixtures: keep the tests hermetic from the environment they run in.

Inside the gateway's container (``docker-compose exec gateway pytest tests -v``) every gateway
setting is set in the environment; tests that expect defaults must not see those.
"""

from __future__ import annotations

import os

import pytest

from gateway.settings import GatewaySettings

SETTING_VARIABLES = {name.upper() for name in GatewaySettings.model_fields}


@pytest.fixture(autouse=True)
def _clean_settings_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper() in SETTING_VARIABLES or name.upper().startswith("FLAKY_"):
            monkeypatch.delenv(name)
