"""Fakes for your own test suites: a clock you move by hand and a scripted upstream.

``FakeClock`` implements the ``Clock`` and ``Sleeper`` ports (sleeping advances it);
``FakeUpstream`` implements ``UpstreamPort`` from a script of outcomes. Override the container's
providers with them: ``container.clock.override(clock)``, ``container.upstream.override(up)``.
"""

from adapters.backend_client.fake import FakeUpstream
from adapters.clock.fake import FakeClock

__all__ = ["FakeClock", "FakeUpstream"]
