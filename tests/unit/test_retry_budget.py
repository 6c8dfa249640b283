"""The retry budget: a share of first attempts plus a floor, over a sliding window."""

import pytest

from adapters.clock.fake import FakeClock
from domain.retry_budget import RetryBudget, RetryBudgetPolicy


def make_budget(
    clock: FakeClock, percent: float = 20, floor_per_second: float = 0, window: float = 10
) -> RetryBudget:
    return RetryBudget(RetryBudgetPolicy(percent, floor_per_second, window), clock)


def spend_all(budget: RetryBudget) -> int:
    spent = 0
    while budget.try_spend():
        spent += 1
    return spent


def test_retries_are_a_share_of_first_attempts() -> None:
    budget = make_budget(FakeClock(), percent=20)
    for _ in range(50):
        budget.record_request()
    assert spend_all(budget) == 10


def test_floor_allows_retries_without_traffic() -> None:
    budget = make_budget(FakeClock(), percent=20, floor_per_second=0.5, window=10)
    assert spend_all(budget) == 5


def test_floor_and_share_add_up() -> None:
    budget = make_budget(FakeClock(), percent=10, floor_per_second=1, window=10)
    for _ in range(30):
        budget.record_request()
    assert spend_all(budget) == 13


def test_budget_refills_as_the_window_slides() -> None:
    clock = FakeClock()
    budget = make_budget(clock, percent=0, floor_per_second=0.2, window=10)
    assert spend_all(budget) == 2
    clock.advance(9.999)
    assert not budget.try_spend()
    clock.advance(0.001)
    assert spend_all(budget) == 2


def test_old_first_attempts_stop_counting() -> None:
    clock = FakeClock()
    budget = make_budget(clock, percent=100)
    for _ in range(4):
        budget.record_request()
    clock.advance(10)
    assert not budget.try_spend()


def test_retries_available_reports_the_room_left() -> None:
    budget = make_budget(FakeClock(), percent=50, floor_per_second=0.1)
    for _ in range(4):
        budget.record_request()
    budget.try_spend()
    assert budget.retries_available() == pytest.approx(1 + 2 - 1)


@pytest.mark.parametrize(("percent", "floor", "window"), [(-1, 0, 1), (0, -1, 1), (0, 0, 0)])
def test_policy_rejects_nonsense(percent: float, floor: float, window: float) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryBudgetPolicy(percent, floor, window)


def test_first_attempts_older_than_the_window_give_no_retries() -> None:
    clock = FakeClock()
    budget = make_budget(clock, percent=50, window=10)
    for _ in range(4):
        budget.record_request()  # t=0: room for 2 retries
    clock.advance(5)
    budget.record_request()
    budget.record_request()  # t=5
    clock.advance(5)  # t=10: the first four have left the window, the last two give 1 retry
    assert budget.retries_available() == pytest.approx(1.0)
    assert spend_all(budget) == 1
