"""Fakes for your own test suites: a clock you move by hand and scripted upstreams.

``FakeClock`` implements the ``Clock`` and ``Sleeper`` ports (sleeping advances it);
``FakeUpstream`` implements ``UpstreamPort`` from a script of outcomes; ``FakeUpstreams`` keeps
one per upstream name of a route table file. Use the pytest plugin's fixtures
(``gateway.pytest_plugin``: ``gateway_client`` with ``@pytest.mark.gateway_config(path)``,
``fake_upstreams``, ``fake_clock``), which wire them in for you, or override the container's
providers yourself: ``container.clock.override(providers.Object(clock))``,
``container.upstream_factory.override(providers.Object(upstreams.factory))``.
"""

from __future__ import annotations

from typing import Any

from adapters.backend_client.fake import Delayed, FakeUpstream
from adapters.clock.fake import FakeClock
from domain.errors import UpstreamTimeout, UpstreamUnavailable
from domain.ports import UpstreamResponse


class FakeUpstreams(dict[str, FakeUpstream]):
    """A ``FakeUpstream`` per upstream name, made on the fake clock the first time it is used."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def __missing__(self, name: str) -> FakeUpstream:
        upstream = self[name] = FakeUpstream(clock=self.clock)
        return upstream

    def factory(self, name: str, config: Any) -> FakeUpstream:
        """The container's ``upstream_factory``: the fake of each upstream, by its name."""
        return self[name]


__all__ = [
    "Delayed",
    "FakeClock",
    "FakeUpstream",
    "FakeUpstreams",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]
