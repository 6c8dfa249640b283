"""Retry-After values as seconds: delay-seconds, HTTP-dates against the wall clock, garbage."""

import pytest
from freezegun import freeze_time

from adapters.clock.http_dates import MAX_RETRY_AFTER_SECONDS, parse_retry_after


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("7", 7.0), (" 120 ", 120.0)])
def test_delay_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


@freeze_time("2026-11-28 10:00:00", tz_offset=0)
def test_http_date_is_seconds_from_now_on_the_wall_clock() -> None:
    assert parse_retry_after("Sat, 28 Nov 2026 10:00:42 GMT") == 42.0


@freeze_time("2026-11-28 10:00:00")
def test_http_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Sat, 28 Nov 2026 09:00:00 GMT") == 0.0


@pytest.mark.parametrize("value", ["soon", "", "-5", "1.5", "Sat, 99 Nov 2026 10:00:00 GMT"])
def test_invalid_values_are_ignored(value: str) -> None:
    assert parse_retry_after(value) is None


def test_absurd_values_are_capped() -> None:
    assert parse_retry_after("999999999") == MAX_RETRY_AFTER_SECONDS
