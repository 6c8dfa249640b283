"""Every setting of the gateway, read from the environment and validated at start.

One pydantic-settings class, a docstring per field; the README's settings table lists the same
fields (``tests/unit/test_settings.py`` checks that they agree).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class GatewaySettings(BaseSettings):
    """The gateway's configuration. Variable names are the field names in upper case."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    gateway_config: str = ""
    """Path of the route table's YAML/JSON file (README, "Routes"); empty: the one default
    route ``/api/v1/data`` to ``BACKEND_URL``, every policy from these settings."""
    backend_url: str = "http://localhost:8001"
    """Base URL of the upstream service (http or https)."""
    backend_timeout_seconds: float = Field(2.0, gt=0, le=300)
    """Time one upstream attempt may take, from connecting to the last body byte."""
    request_timeout_seconds: float = Field(10.0, gt=0, le=600)
    """Deadline of a whole client request: attempts and backoff sleeps together."""
    upstream_pool_size: int = Field(100, ge=1, le=10_000)
    """Most connections kept open to the upstream."""
    upstream_client: Literal["httptools", "aiohttp", "httpx"] = "httptools"
    """HTTP client adapter for the upstream: ``httptools`` (lean, the default), ``aiohttp`` or
    ``httpx``."""
    max_upstream_header_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest header section accepted from the upstream, interim 1xx answers included."""
    max_upstream_headers: int = Field(100, ge=1, le=10_000)
    """Most header fields accepted in one upstream answer."""
    max_upstream_body_bytes: int = Field(100 * 1024 * 1024, ge=1, le=1 << 40)
    """Largest upstream body passed on; past it the answer is a 502 (or cut, once streaming)."""

    max_request_body_bytes: int = Field(10 * 1024 * 1024, ge=0, le=1 << 40)
    """Largest request body accepted from a client; past it a 413."""
    client_header_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    """Time a client has to send a whole request head; past it the connection is closed."""
    client_body_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    """Longest pause allowed between two reads of a request body (past it a 408), and between
    two writes of a streamed answer to a client that stopped reading (past it, cut)."""
    max_client_connections: int = Field(10_000, ge=1, le=1_000_000)
    """Client connections open at once; one more is refused with a 503 at once."""

    failure_threshold: int = Field(5, ge=1, le=10_000)
    """Consecutive failed attempts that open the circuit breaker (``consecutive`` mode)."""
    recovery_timeout_seconds: float = Field(30.0, gt=0, le=86_400)
    """Time the breaker stays OPEN before it admits a trial call (HALF_OPEN)."""
    half_open_max_calls: int = Field(1, ge=1, le=1_000)
    """Trial calls allowed in flight at once while HALF_OPEN."""
    breaker_mode: Literal["consecutive", "failure_rate"] = "consecutive"
    """``consecutive``: open after ``FAILURE_THRESHOLD`` failures in a row; ``failure_rate``: on
    the share of failures in a sliding window."""
    failure_rate_threshold: float = Field(50.0, gt=0, le=100)
    """``failure_rate`` mode: percent of failed calls in the window that opens the breaker."""
    sliding_window_type: Literal["count", "time"] = "count"
    """The breaker's window: the last ``SLIDING_WINDOW_SIZE`` calls, or seconds."""
    sliding_window_size: int = Field(100, ge=1, le=10_000)
    """Calls (``count``) or seconds (``time``) in the breaker's window."""
    minimum_calls: int = Field(20, ge=1, le=100_000)
    """Calls the window must hold before a failure or slow-call rate can open the breaker."""
    slow_call_duration_seconds: float = Field(0.0, ge=0, le=600)
    """An attempt that takes longer is slow (0: off); slow calls have their own rate."""
    slow_call_rate_threshold: float = Field(100.0, gt=0, le=100)
    """Percent of slow calls in the window that opens the breaker (both modes)."""
    recovery_backoff_multiplier: float = Field(1.0, ge=1, le=100)
    """Each failed HALF_OPEN trial multiplies the open time by this (1: fixed)."""
    max_recovery_timeout_seconds: float = Field(300.0, gt=0, le=86_400)
    """Cap on the grown open time."""

    max_retries: int = Field(3, ge=0, le=20)
    """Retries after the first attempt, for transient failures only."""
    initial_backoff_seconds: float = Field(0.5, ge=0, le=600)
    """Wait before the first retry."""
    backoff_multiplier: float = Field(2.0, ge=1, le=10)
    """Factor by which each further wait grows."""
    max_backoff_seconds: float = Field(10.0, ge=0, le=600)
    """Cap on any single wait."""
    retry_on_status: Annotated[frozenset[int], NoDecode] = frozenset({503})
    """Upstream statuses that count as transient and are retried (comma-separated)."""
    backoff_jitter: Literal["none", "full", "equal", "decorrelated"] = "none"
    """Randomisation of each (already capped) wait: ``none`` keeps the exact schedule."""
    retry_budget_percent: float = Field(20.0, ge=0, le=1000)
    """Retries may add at most this share of first attempts over a sliding 10 s."""
    retry_budget_min_retries_per_second: float = Field(10.0, ge=0, le=100_000)
    """Floor of the retry budget, so a quiet route can still retry."""
    max_concurrent_upstream_requests: int = Field(100, ge=1, le=100_000)
    """Calls in flight to the upstream at most; past it the gateway answers 503 at once."""
    min_attempt_seconds: float = Field(0.05, gt=0, le=60)
    """No attempt starts with less time than this left before the request's deadline."""

    rate_limit_enabled: bool = True
    """Whether clients are rate-limited at all."""
    rate_limit_requests_per_window: int = Field(100, ge=1, le=10_000_000)
    """Requests one client may make per sliding window."""
    rate_limit_window_seconds: float = Field(60.0, gt=0, le=86_400)
    """Length of the sliding window."""
    rate_limit_algorithm: Literal["sliding_log", "sliding_counter"] = "sliding_log"
    """``sliding_log``: exact; ``sliding_counter``: O(1) per client, approximate (README)."""
    rate_limit_storage_url: str = "memory://"
    """Where counts live: ``memory://`` (this process) or ``redis://host:port/db``/``rediss://``."""
    rate_limit_key_prefix: str = Field("gateway:rl:", min_length=1, max_length=200)
    """Prefix of every Redis key of the limiter."""
    rate_limit_storage_timeout_seconds: float = Field(0.05, gt=0, le=10)
    """A storage decision slower than this counts as a storage failure."""
    rate_limit_fail_open: bool = True
    """When the storage fails: let requests through (true) or answer 503 (false)."""
    trusted_proxies: Annotated[tuple[Network, ...], NoDecode] = ()
    """CIDRs of proxies whose ``X-Forwarded-For`` is believed (comma-separated; empty: none)."""

    admin_token: SecretStr = SecretStr("")
    """Bearer token of the admin API (``/admin/...``); empty: the admin API is off (404)."""
    admin_port: int = Field(0, ge=0, le=65_535)
    """Serve the admin API on its own port instead of the proxy's (0: the proxy's port)."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Least severe log level written; ``INFO`` logs one line per request."""
    log_format: Literal["json", "console"] = "json"
    """``json``: one JSON object per line; ``console``: aligned text for humans."""

    dashboard_enabled: bool = True
    """Whether the gateway serves its live dashboard (``/dashboard``, ``/dashboard/events``)."""
    dashboard_interval_seconds: float = Field(0.5, ge=0.05, le=60)
    """Time between two snapshots on the dashboard's event stream."""
    dashboard_max_streams: int = Field(5, ge=1, le=1_000)
    """Dashboard event streams open at once at most; one more gets a 503 problem."""

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _normalise_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (
                value.upper()
                if value.lower() in ("debug", "info", "warning", "error")
                else value.lower()
            )
        return value

    @field_validator("backend_url")
    @classmethod
    def _check_backend_url(cls, value: str) -> str:
        check_url(value, ("http", "https"), "must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _check_storage_url(cls, value: str) -> str:
        if value == "memory://":
            return value
        check_url(value, ("redis", "rediss"), "must be memory:// or a redis:// or rediss:// URL")
        return value

    @property
    def shared_rate_limit(self) -> bool:
        """Whether the limiter's counts are shared between processes (not ``memory://``)."""
        return self.rate_limit_storage_url != "memory://"

    @field_validator("retry_on_status", mode="before")
    @classmethod
    def _split_statuses(cls, value: Any) -> Any:
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            if not all(item.isdigit() for item in items):
                raise ValueError("must be comma-separated HTTP status codes, e.g. 502,503")
            value = frozenset(int(item) for item in items)
        return value

    @field_validator("retry_on_status")
    @classmethod
    def _check_statuses(cls, value: frozenset[int]) -> frozenset[int]:
        if any(not 400 <= status <= 599 for status in value):
            raise ValueError("statuses must be between 400 and 599")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            networks = []
            for item in (part.strip() for part in value.split(",")):
                if not item:
                    continue
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or CIDR") from None
            value = tuple(networks)
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> GatewaySettings:
        """Refuse settings that contradict each other, as Polly validates its pipelines."""
        if self.max_backoff_seconds < self.initial_backoff_seconds:
            raise ValueError("MAX_BACKOFF_SECONDS must not be smaller than INITIAL_BACKOFF_SECONDS")
        if self.backend_timeout_seconds > self.request_timeout_seconds:
            raise ValueError(
                f"BACKEND_TIMEOUT_SECONDS ({self.backend_timeout_seconds:g}) must not exceed "
                f"REQUEST_TIMEOUT_SECONDS ({self.request_timeout_seconds:g})"
            )
        waits = [
            min(self.initial_backoff_seconds * self.backoff_multiplier**n, self.max_backoff_seconds)
            for n in range(self.max_retries)
        ]
        if sum(waits) > self.request_timeout_seconds:
            schedule = " + ".join(f"{w:g}" for w in waits)
            raise ValueError(
                f"the backoff schedule ({schedule} = {sum(waits):g} s) exceeds "
                f"REQUEST_TIMEOUT_SECONDS ({self.request_timeout_seconds:g}); lower MAX_RETRIES "
                "or the backoff, or raise the deadline"
            )
        if self.recovery_timeout_seconds < self.backend_timeout_seconds:
            raise ValueError(
                f"RECOVERY_TIMEOUT_SECONDS ({self.recovery_timeout_seconds:g}) must not be "
                f"shorter than BACKEND_TIMEOUT_SECONDS ({self.backend_timeout_seconds:g})"
            )
        if self.min_attempt_seconds > self.backend_timeout_seconds:
            raise ValueError(
                f"MIN_ATTEMPT_SECONDS ({self.min_attempt_seconds:g}) must not exceed "
                f"BACKEND_TIMEOUT_SECONDS ({self.backend_timeout_seconds:g})"
            )
        self._check_breaker_policy()
        self._check_admin()
        return self

    def _check_breaker_policy(self) -> None:
        if self.sliding_window_type == "count" and self.minimum_calls > self.sliding_window_size:
            raise ValueError(
                f"MINIMUM_CALLS ({self.minimum_calls}) must not exceed SLIDING_WINDOW_SIZE "
                f"({self.sliding_window_size}) of a count window: the breaker could never see "
                "that many calls"
            )
        if (
            self.slow_call_duration_seconds
            and self.slow_call_duration_seconds >= self.backend_timeout_seconds
        ):
            raise ValueError(
                f"SLOW_CALL_DURATION_SECONDS ({self.slow_call_duration_seconds:g}) must be "
                f"shorter than BACKEND_TIMEOUT_SECONDS ({self.backend_timeout_seconds:g}): "
                "no attempt lasts longer, so no call would ever be slow"
            )
        if (
            self.recovery_backoff_multiplier > 1
            and self.max_recovery_timeout_seconds < self.recovery_timeout_seconds
        ):
            raise ValueError(
                f"MAX_RECOVERY_TIMEOUT_SECONDS ({self.max_recovery_timeout_seconds:g}) must not "
                f"be shorter than RECOVERY_TIMEOUT_SECONDS ({self.recovery_timeout_seconds:g}) "
                f"when RECOVERY_BACKOFF_MULTIPLIER ({self.recovery_backoff_multiplier:g}) grows it"
            )

    def _check_admin(self) -> None:
        token = self.admin_token.get_secret_value()
        if token and (len(token) < 16 or not token.isprintable() or " " in token):
            raise ValueError(
                "ADMIN_TOKEN must be at least 16 printable characters without spaces "
                "(its value is not shown)"
            )
        if self.admin_port and not token:
            raise ValueError(f"ADMIN_PORT ({self.admin_port}) is set but ADMIN_TOKEN is empty")

    @property
    def admin_enabled(self) -> bool:
        """Whether the admin API is served at all (``ADMIN_TOKEN`` is set)."""
        return bool(self.admin_token.get_secret_value())


def check_url(value: str, schemes: tuple[str, ...], message: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(message)
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as error:
        raise ValueError(f"has an invalid port ({error})") from None


def describe_error(error: ValidationError) -> str:
    """One line naming each bad variable, for the start-up error."""
    parts = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper() or "settings"
        message = item["msg"].removeprefix("Value error, ")
        if item["loc"]:
            shown = "(hidden)" if name == "ADMIN_TOKEN" else item.get("input")
            parts.append(f"{name}={shown!s}: {message}")
        else:
            parts.append(message)
    return "invalid setting " + "; ".join(parts)
