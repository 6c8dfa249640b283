"""A pytest plugin for your own tests of the gateway: fake time, a scripted upstream, the app.

Installed with the package (entry point ``pytest11``), so its fixtures are there in any suite
that has ``resilient-gateway`` installed; nothing to import or list in ``conftest.py``:

- ``fake_clock``: a ``FakeClock`` (``advance(seconds)``; the gateway's sleeps advance it).
- ``fake_upstream``: a ``FakeUpstream`` on that clock: ``push(503, Delayed(200, 1.5), ...)``
  scripts its answers (an int status, an ``UpstreamResponse``, an ``UpstreamError`` to raise,
  or one of those ``Delayed`` in fake time); then it answers 200. ``requests`` lists what it
  received.
- ``gateway_client``: an ``httpx.AsyncClient`` over ASGI on the real app and wiring, built from
  ``gateway_settings``, with the fakes above in place of the clock and the upstream. No socket,
  no sleep: a breaker's 30 s recovery is ``fake_clock.advance(30)``.
- ``gateway_settings``: the settings, as a dict of field or variable names
  (``{"failure_threshold": 3}`` or ``{"FAILURE_THRESHOLD": "3"}``). Empty by default; override
  the fixture, or mark a test ``@pytest.mark.gateway_settings(failure_threshold=3)``. The
  environment is never read, so a test means the same on every machine.
- ``gateway_config``: the path of your route table file (``GATEWAY_CONFIG``), or None for the
  one default route. None by default; override the fixture, or mark a test
  ``@pytest.mark.gateway_config("deploy/gateway.yaml")`` (relative to pytest's rootdir). The
  file is validated as at start: an invalid one fails the test with the one-line error.
- ``fake_upstreams``: a ``FakeUpstream`` per upstream name of your file, on ``fake_clock``:
  ``fake_upstreams["users"].push(503)``. ``fake_upstream`` is the one for ``backend`` (the
  default route's upstream).

``gateway_client`` is an async fixture of pytest-asyncio: with ``asyncio_mode = "strict"``, mark
your tests ``@pytest.mark.asyncio``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    import httpx

    from adapters.backend_client.fake import FakeUpstream
    from adapters.clock.fake import FakeClock
    from gateway.testing import FakeUpstreams

CLIENT_ADDRESS = ("203.0.113.10", 50000)
"""The peer the gateway sees for ``gateway_client``'s requests."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gateway_settings(**settings): settings of the gateway that gateway_client builds",
    )
    config.addinivalue_line(
        "markers", "gateway_config(path): the route table file gateway_client loads"
    )


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that moves only when told to (``advance``) or when the gateway sleeps."""
    from adapters.clock.fake import FakeClock

    return FakeClock()


@pytest.fixture
def fake_upstream(fake_clock: FakeClock) -> FakeUpstream:
    """A scripted upstream on ``fake_clock``: 200 unless ``push``-ed otherwise."""
    from adapters.backend_client.fake import FakeUpstream

    return FakeUpstream(clock=fake_clock)


@pytest.fixture
def fake_upstreams(fake_clock: FakeClock, fake_upstream: FakeUpstream) -> FakeUpstreams:
    """A scripted upstream per upstream name, made on first use; ``backend`` is
    ``fake_upstream``."""
    from gateway.config import DEFAULT_UPSTREAM_NAME
    from gateway.testing import FakeUpstreams

    upstreams = FakeUpstreams(fake_clock)
    upstreams[DEFAULT_UPSTREAM_NAME] = fake_upstream
    return upstreams


@pytest.fixture
def gateway_config(request: pytest.FixtureRequest) -> Path | None:
    """The route table file for this test; ``@pytest.mark.gateway_config(path)`` sets it."""
    marker = request.node.get_closest_marker("gateway_config")
    if marker is None or not marker.args:
        return None
    path = Path(marker.args[0])
    return path if path.is_absolute() else request.config.rootpath / path


@pytest.fixture
def gateway_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The gateway's settings for this test; ``@pytest.mark.gateway_settings`` adds to them."""
    settings: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("gateway_settings"))):
        settings.update(marker.kwargs)
    return settings


@pytest_asyncio.fixture
async def gateway_client(
    gateway_settings: dict[str, Any],
    gateway_config: Path | None,
    fake_clock: FakeClock,
    fake_upstreams: FakeUpstreams,
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in process, over ASGI, with the fake clock and upstreams wired in."""
    import httpx
    from asgi_lifespan import LifespanManager
    from dependency_injector import providers
    from pydantic import ValidationError
    from pydantic_settings import BaseSettings

    from gateway.config import ConfigError, default_config, load_config
    from gateway.containers import Container
    from gateway.settings import GatewaySettings, describe_error

    class SettingsOfThisTest(GatewaySettings):
        """The given values over the defaults: no environment variable, no ``.env`` file."""

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: Any, *_: Any, **__: Any
        ) -> tuple[Any, ...]:
            return (init_settings,)

    values = {name.lower(): value for name, value in gateway_settings.items()}
    try:
        settings = SettingsOfThisTest(**values)
    except ValidationError as error:
        pytest.fail(f"gateway_settings: {describe_error(error)}", pytrace=False)
    try:
        config = (
            load_config(gateway_config, settings)
            if gateway_config is not None
            else default_config(settings)
        )
    except ConfigError as error:
        pytest.fail(f"gateway_config: {error}", pytrace=False)
    container = Container()
    container.settings.override(providers.Object(settings))
    container.config.override(providers.Object(config))
    container.clock.override(providers.Object(fake_clock))
    container.upstream_factory.override(providers.Object(fake_upstreams.factory))
    app = container.app()
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=CLIENT_ADDRESS)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client
