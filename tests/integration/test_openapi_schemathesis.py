"""Schemathesis drives every operation in /openapi.json and checks the answers against it."""

from __future__ import annotations

import schemathesis
from dependency_injector import providers
from hypothesis import settings

from adapters.backend_client.fake import FakeUpstream
from domain.ports import UpstreamResponse
from gateway.containers import Container, every_upstream
from gateway.settings import GatewaySettings


def build_app() -> object:
    container = Container()
    container.settings.override(
        providers.Object(GatewaySettings(_env_file=None, rate_limit_requests_per_window=30))
    )
    answer = UpstreamResponse(200, (("content-type", "application/json"),), b'{"data":1}')
    container.upstream_factory.override(
        providers.Object(every_upstream(FakeUpstream(default=answer)))
    )
    return container.app()


schema = schemathesis.openapi.from_asgi("/openapi.json", build_app())


@schema.parametrize()
@settings(max_examples=30, deadline=None)
def test_every_operation_conforms_to_the_schema(case: schemathesis.Case) -> None:
    case.call_and_validate()
