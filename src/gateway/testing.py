"""Fakes for your own test suites: a clock you move by hand and a scripted upstream.

``FakeClock`` implements the ``Clock`` and ``Sleeper`` ports (sleeping advances it);
``FakeUpstream`` implements ``UpstreamPort`` from a script of outcomes. Override the container's
providers with them: ``container.clock.override(clock)``, ``container.upstream.override(up)``,
or use the pytest plugin's fixtures (``gateway.pytest_plugin``), which do that for you.
"""

from adapters.backend_client.fake import Delayed, FakeUpstream
from adapters.clock.fake import FakeClock
from domain.errors import UpstreamTimeout, UpstreamUnavailable
from domain.ports import UpstreamResponse

__all__ = [
    "Delayed",
    "FakeClock",
    "FakeUpstream",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]
