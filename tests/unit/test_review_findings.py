"""What an adversarial review of the hardening (issue 11) found in the use case, kept as a rule."""

from __future__ import annotations

from adapters.clock.fake import FakeClock
from application.forward import Forwarded
from domain.bulkhead import Bulkhead
from domain.retry_budget import RetryBudget, RetryBudgetPolicy
from tests.unit.conftest import MakeForward
from tests.unit.test_forward_bodies_and_streams import REQUEST, BodySource, ScriptedStream, streamed


async def test_a_streamed_answer_passed_on_when_the_budget_refuses_a_retry_keeps_its_slot(
    make_forward: MakeForward, clock: FakeClock
) -> None:
    """A retryable status (503) with a streamed body is released in the attempt's ``finally``
    (it is not "streamed" since its status may be retried); when the retry budget then refuses
    the retry, ``Forwarded(response)`` passes on that stream *unwrapped*: its bulkhead slot is
    already free while the gateway still reads it from the upstream (unbounded by the bulkhead
    under a failure storm, when budgets run dry), and a break in it is never counted
    (``upstream_answer_cut``). The module's rule: "Until then its bulkhead slot stays taken"."""
    bulkhead = Bulkhead(1)
    stream = ScriptedStream([b"rest"])
    budget = RetryBudget(RetryBudgetPolicy(percent=0.0, min_retries_per_second=0.0), clock)
    forward, _, _ = make_forward(streamed(503, stream), bulkhead=bulkhead, retry_budget=budget)
    result = await forward("client", REQUEST, BodySource())
    assert isinstance(result, Forwarded)
    assert result.response.rest is not None
    assert bulkhead.in_flight == 1  # the stream is still being passed on
    async for _ in result.response.rest:
        pass
    assert bulkhead.in_flight == 0
