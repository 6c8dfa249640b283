"""Settings: defaults, parsing, refusal of bad values, and the README's table."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings, describe_error

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_give_the_documented_backoff_schedule() -> None:
    settings = GatewaySettings(_env_file=None)
    assert settings.backend_url == "http://localhost:8001"
    assert settings.retry_on_status == frozenset({503})
    assert settings.trusted_proxies == ()
    assert (settings.initial_backoff_seconds, settings.backoff_multiplier) == (0.5, 2.0)


def test_lists_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_ON_STATUS", "502, 503,504")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1,fd00::/8")
    settings = GatewaySettings()
    assert settings.retry_on_status == frozenset({502, 503, 504})
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.1/32"),
        ipaddress.ip_network("fd00::/8"),
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FAILURE_THRESHOLD", "-1"),
        ("FAILURE_THRESHOLD", "many"),
        ("RATE_LIMIT_WINDOW_SECONDS", "0"),
        ("RATE_LIMIT_REQUESTS_PER_WINDOW", "0"),
        ("BACKEND_URL", "not a url"),
        ("BACKEND_URL", "ftp://example.com"),
        ("BACKEND_URL", "http://host:99999"),
        ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("TRUSTED_PROXIES", "banana"),
        ("RETRY_ON_STATUS", "503,abc"),
        ("RETRY_ON_STATUS", "200"),
        ("HALF_OPEN_MAX_CALLS", "0"),
        ("RECOVERY_TIMEOUT_SECONDS", "-5"),
        ("BACKOFF_MULTIPLIER", "0.5"),
        ("RATE_LIMIT_ENABLED", "maybe"),
        ("RATE_LIMIT_STORAGE_URL", "memcached://host"),
        ("RATE_LIMIT_STORAGE_URL", "redis://host:notaport/0"),
        ("RATE_LIMIT_STORAGE_URL", "redis://"),
        ("RATE_LIMIT_ALGORITHM", "token_bucket"),
        ("DASHBOARD_ENABLED", "sometimes"),
        ("DASHBOARD_INTERVAL_SECONDS", "0"),
        ("DASHBOARD_MAX_STREAMS", "0"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        GatewaySettings()
    message = describe_error(caught.value)
    assert variable in message
    assert "\n" not in message


def test_backoff_cap_below_the_first_wait_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INITIAL_BACKOFF_SECONDS", "5")
    monkeypatch.setenv("MAX_BACKOFF_SECONDS", "1")
    with pytest.raises(ValidationError) as caught:
        GatewaySettings()
    assert "MAX_BACKOFF_SECONDS" in describe_error(caught.value)


def test_gateway_refuses_to_start_with_one_line_naming_the_variable() -> None:
    env = {"PATH": "/usr/bin:/bin", "FAILURE_THRESHOLD": "-3"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "FAILURE_THRESHOLD=-3" in lines[0]


def test_readme_documents_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", readme, flags=re.MULTILINE))
    defaults = GatewaySettings(_env_file=None).model_dump()
    for field, default in defaults.items():
        name = field.upper()
        assert name in rows, f"{name} is missing from the README's settings table"
        assert rows[name] == _shown(default), f"README default of {name} differs"


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, frozenset | tuple):
        return ",".join(str(item) for item in sorted(value, key=str))
    return str(value)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"BACKEND_TIMEOUT_SECONDS": "20", "REQUEST_TIMEOUT_SECONDS": "10"}, "REQUEST_TIMEOUT"),
        ({"MAX_RETRIES": "5", "INITIAL_BACKOFF_SECONDS": "2"}, "backoff schedule"),
        ({"RECOVERY_TIMEOUT_SECONDS": "1", "BACKEND_TIMEOUT_SECONDS": "2"}, "RECOVERY_TIMEOUT"),
        ({"MIN_ATTEMPT_SECONDS": "3", "BACKEND_TIMEOUT_SECONDS": "2"}, "MIN_ATTEMPT_SECONDS"),
        ({"BACKOFF_JITTER": "chaotic"}, "BACKOFF_JITTER"),
        ({"MAX_CONCURRENT_UPSTREAM_REQUESTS": "0"}, "MAX_CONCURRENT_UPSTREAM_REQUESTS"),
    ],
)
def test_contradictory_settings_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], named: str
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        GatewaySettings()
    assert named in describe_error(caught.value)


def test_several_workers_with_memory_storage_are_refused_with_the_reason() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--port", "0", "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "multiply" in message
    assert "RATE_LIMIT_STORAGE_URL=redis://" in message
