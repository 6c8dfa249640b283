"""The deployment files agree with the code: a typo in a variable name fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {name.upper() for name in GatewaySettings.model_fields}
BOOLS = {"true", "false"}


def compose_environment(service: str) -> dict[str, str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["services"][service]["environment"]
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


@pytest.mark.parametrize("source", ["compose", "env-example"])
def test_every_variable_is_a_gateway_setting_and_every_setting_is_there(source: str) -> None:
    variables = compose_environment("gateway") if source == "compose" else env_example()
    assert set(variables) - SETTINGS == set(), "unknown variables (typos?)"
    assert SETTINGS - set(variables) == set(), "settings missing from the file"


@pytest.mark.parametrize("source", ["compose", "env-example"])
def test_the_gateway_accepts_the_values(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    variables = compose_environment("gateway") if source == "compose" else env_example()
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings()
    for name, value in variables.items():
        if value and name not in {"RETRY_ON_STATUS", "TRUSTED_PROXIES"} and value not in BOOLS:
            assert str(getattr(settings, name.lower())) == value


def test_env_example_holds_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env_example().items():
        monkeypatch.setenv(name, value)
    assert GatewaySettings() == GatewaySettings.model_validate({})


def test_the_gateway_reaches_the_backend_by_service_name() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    gateway = compose["services"]["gateway"]
    assert compose_environment("gateway")["BACKEND_URL"] == "http://flaky-backend:8001"
    assert gateway["depends_on"]["flaky-backend"]["condition"] == "service_healthy"
    assert {"8000:8000"} == set(gateway["ports"])
    assert "healthcheck" in gateway
    assert "healthcheck" in compose["services"]["flaky-backend"]


def test_compose_backend_variables_are_backend_settings() -> None:
    from flaky_backend.settings import BackendSettings

    known = {f"FLAKY_{name.upper()}" for name in BackendSettings.model_fields}
    # CHAOS_TOKEN guards PUT/DELETE /chaos; it has no FLAKY_ prefix (verify.sh sends it too).
    assert set(compose_environment("flaky-backend")) <= known | {"CHAOS_TOKEN"}
