"""The breaker-mode and admin settings: parsed, refused together, and handed to the domain."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from domain.breaker import BreakerMode, WindowType
from gateway.containers import build_breaker_policy
from gateway.settings import GatewaySettings, describe_error


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"MINIMUM_CALLS": "20", "SLIDING_WINDOW_SIZE": "10"}, "MINIMUM_CALLS (20)"),
        ({"SLOW_CALL_DURATION_SECONDS": "2", "BACKEND_TIMEOUT_SECONDS": "2"}, "SLOW_CALL_DURATION"),
        (
            {"RECOVERY_BACKOFF_MULTIPLIER": "2", "MAX_RECOVERY_TIMEOUT_SECONDS": "10"},
            "MAX_RECOVERY_TIMEOUT_SECONDS (10)",
        ),
        ({"ADMIN_PORT": "9100"}, "ADMIN_TOKEN is empty"),
        ({"FAILURE_RATE_THRESHOLD": "0"}, "FAILURE_RATE_THRESHOLD"),
        ({"SLOW_CALL_RATE_THRESHOLD": "101"}, "SLOW_CALL_RATE_THRESHOLD"),
        ({"BREAKER_MODE": "percentage"}, "BREAKER_MODE"),
        ({"SLIDING_WINDOW_TYPE": "sessions"}, "SLIDING_WINDOW_TYPE"),
        ({"RECOVERY_BACKOFF_MULTIPLIER": "0.5"}, "RECOVERY_BACKOFF_MULTIPLIER"),
    ],
)
def test_breaker_settings_that_cannot_work_are_refused_naming_them(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], named: str
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        GatewaySettings(_env_file=None)
    message = describe_error(caught.value)
    assert named in message
    assert "\n" not in message


def test_a_time_window_may_ask_for_more_calls_than_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLIDING_WINDOW_TYPE", "time")
    monkeypatch.setenv("SLIDING_WINDOW_SIZE", "10")
    monkeypatch.setenv("MINIMUM_CALLS", "50")
    assert GatewaySettings(_env_file=None).minimum_calls == 50


def test_the_multiplier_cap_is_free_while_the_open_time_is_fixed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECOVERY_TIMEOUT_SECONDS", "600")
    assert GatewaySettings(_env_file=None).recovery_timeout_seconds == 600


def test_a_weak_admin_token_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "hunter2")
    with pytest.raises(ValidationError) as caught:
        GatewaySettings(_env_file=None)
    message = describe_error(caught.value)
    assert "ADMIN_TOKEN" in message
    assert "hunter2" not in message


def test_the_admin_token_never_shows_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "s3cret-s3cret-s3cret")
    settings = GatewaySettings(_env_file=None)
    assert settings.admin_enabled
    assert "s3cret" not in repr(settings)
    assert not GatewaySettings(_env_file=None, admin_token="").admin_enabled  # type: ignore[arg-type]


def test_the_container_hands_every_breaker_setting_to_the_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "BREAKER_MODE": "failure_rate", "FAILURE_RATE_THRESHOLD": "40",
        "SLIDING_WINDOW_TYPE": "time", "SLIDING_WINDOW_SIZE": "30", "MINIMUM_CALLS": "7",
        "SLOW_CALL_DURATION_SECONDS": "1.5", "SLOW_CALL_RATE_THRESHOLD": "80",
        "RECOVERY_BACKOFF_MULTIPLIER": "2", "MAX_RECOVERY_TIMEOUT_SECONDS": "120",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    policy = build_breaker_policy(GatewaySettings(_env_file=None))
    assert policy.mode is BreakerMode.FAILURE_RATE
    assert policy.sliding_window_type is WindowType.TIME
    assert (policy.failure_rate_threshold_percent, policy.sliding_window_size) == (40.0, 30)
    assert (policy.minimum_calls, policy.slow_call_duration_seconds) == (7, 1.5)
    assert policy.slow_call_rate_threshold_percent == 80.0
    assert (policy.recovery_backoff_multiplier, policy.max_recovery_timeout_seconds) == (2.0, 120.0)


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--port", "0", "--workers", "2"], "needs one process"),
        (["--port", "9321"], "must differ from the proxy's --port"),
    ],
)
def test_an_admin_port_that_cannot_work_stops_the_gateway_with_one_line(
    arguments: list[str], said: str
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "ADMIN_TOKEN": "an-admin-token-long-enough",
        "ADMIN_PORT": "9321",
        "RATE_LIMIT_STORAGE_URL": "redis://127.0.0.1:1/0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *arguments],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert said in lines[0]
    assert "an-admin-token" not in lines[0]
