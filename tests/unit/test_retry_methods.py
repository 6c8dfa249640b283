"""Retries are for idempotent methods: a POST that got a 503 is not sent twice."""

from __future__ import annotations

import pytest

from application.forward import Forwarded, UpstreamFailed
from domain.errors import UpstreamTimeout, UpstreamUnavailable
from domain.ports import UpstreamRequest
from tests.unit.conftest import MakeForward


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("failure", [503, UpstreamTimeout("slow"), UpstreamUnavailable("down")])
async def test_a_non_idempotent_request_is_sent_once(
    make_forward: MakeForward, method: str, failure: object
) -> None:
    forward, upstream, counters = make_forward(failure, 200)
    result = await forward("client", UpstreamRequest(method, "/flaky-data", body=b"order"))
    assert isinstance(result, UpstreamFailed)
    assert (result.attempts, result.stopped_by) == (1, "not_idempotent")
    assert len(upstream.calls) == 1
    assert counters.retries == 0


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
async def test_an_idempotent_request_is_retried(make_forward: MakeForward, method: str) -> None:
    forward, upstream, counters = make_forward(503, 200)
    result = await forward("client", UpstreamRequest(method, "/flaky-data"))
    assert isinstance(result, Forwarded)
    assert result.attempts == 2
    assert [call.method for call, _ in upstream.calls] == [method, method]
    assert counters.retries == 1


async def test_a_route_may_retry_non_idempotent_methods_when_it_says_so(
    make_forward: MakeForward,
) -> None:
    forward, upstream, _ = make_forward(503, 200, retry_non_idempotent=True)
    result = await forward("client", UpstreamRequest("POST", "/flaky-data", body=b"order"))
    assert isinstance(result, Forwarded)
    assert [call.body for call, _ in upstream.calls] == [b"order", b"order"]


async def test_a_post_that_succeeds_is_forwarded_as_it_is(make_forward: MakeForward) -> None:
    forward, upstream, _ = make_forward(201)
    result = await forward("client", UpstreamRequest("POST", "/flaky-data", body=b"x"))
    assert isinstance(result, Forwarded)
    assert result.response.status == 201
    assert len(upstream.calls) == 1


async def test_a_post_without_retries_left_says_retries_exhausted(
    make_forward: MakeForward,
) -> None:
    """With no retries at all the method makes no difference: the usual reason is kept."""
    from domain.retry import RetryPolicy

    forward, _, _ = make_forward(503, retry=RetryPolicy(max_retries=0))
    result = await forward("client", UpstreamRequest("POST", "/flaky-data"))
    assert isinstance(result, UpstreamFailed)
    assert result.stopped_by == "retries_exhausted"


async def test_a_post_that_is_not_retried_still_carries_its_rate_limit_decision(
    make_forward: MakeForward,
) -> None:
    forward, _, _ = make_forward(503, limit=5)
    result = await forward("client", UpstreamRequest("POST", "/flaky-data"))
    assert isinstance(result, UpstreamFailed)
    assert result.stopped_by == "not_idempotent"
    assert result.rate_limit is not None
    assert (result.rate_limit.allowed, result.rate_limit.remaining) == (True, 4)
