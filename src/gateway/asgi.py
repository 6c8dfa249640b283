"""The app built from the environment, for servers that import it by name.

``resilient-gateway --workers N`` hands ``gateway.asgi:app_from_environment`` to uvicorn, which
calls it once in each worker process: every worker builds its own container.
"""

from __future__ import annotations

from fastapi import FastAPI

from adapters.observability import configure_logging
from gateway.containers import Container
from gateway.heap import freeze_startup_heap
from gateway.settings import GatewaySettings


def app_from_environment() -> FastAPI:
    settings = GatewaySettings()
    configure_logging(settings.log_level, settings.log_format)
    container = Container()
    container.settings.override(settings)
    app: FastAPI = container.app()
    freeze_startup_heap()
    return app
