"""Start-up settings of the flaky backend (``FLAKY_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BackendSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLAKY_", frozen=True, extra="ignore")

    failure_rate: float = Field(0.3, ge=0, le=1)
    """Share of requests answered with the failure status."""
    slow_rate: float = Field(0.1, ge=0, le=1)
    """Share of requests answered late."""
    slow_seconds: float = Field(3.0, ge=0, le=300)
    """How late a slow answer is."""
    seed: int = 42
    """Seed of the random source, so a run can be repeated."""
    chaos_token: str | None = Field(None, min_length=1, validation_alias="CHAOS_TOKEN")
    """When set (``CHAOS_TOKEN``), changing ``/chaos`` needs ``Authorization: Bearer <token>``."""
