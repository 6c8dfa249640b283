"""The retry policy's schedule and what it retries."""

import pytest

from domain.retry import RetryPolicy


def test_default_schedule_is_half_one_two_seconds() -> None:
    assert RetryPolicy().schedule() == (0.5, 1.0, 2.0)


def test_delays_grow_by_the_multiplier_and_stop_at_the_cap() -> None:
    policy = RetryPolicy(
        max_retries=6, initial_backoff_seconds=1.0, backoff_multiplier=3.0, max_backoff_seconds=20.0
    )
    assert policy.schedule() == (1.0, 3.0, 9.0, 20.0, 20.0, 20.0)


def test_no_retries_means_an_empty_schedule() -> None:
    assert RetryPolicy(max_retries=0).schedule() == ()


@pytest.mark.parametrize(
    ("status", "retried"), [(503, True), (500, False), (502, False), (429, False), (200, False)]
)
def test_only_configured_statuses_are_retried(status: int, retried: bool) -> None:
    assert RetryPolicy().retries_status(status) is retried


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        RetryPolicy().next_delay(0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"initial_backoff_seconds": -0.1},
        {"backoff_multiplier": 0.5},
        {"max_backoff_seconds": -1.0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
