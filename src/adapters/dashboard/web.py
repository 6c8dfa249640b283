"""The dashboard's two routes on the gateway's app: the page and its event stream.

The page is one HTML file with its script and styles inline, read from the package's data once
when the app is built: nothing is fetched from anywhere else, so it works offline and in an
air-gapped cluster.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import Route

from adapters.dashboard.stream import DashboardHub, EventStream

PAGE_PATH = "/dashboard"
EVENTS_PATH = "/dashboard/events"


def dashboard_page() -> bytes:
    return files("adapters.dashboard").joinpath("static/dashboard.html").read_bytes()


def add_dashboard(app: FastAPI, hub: DashboardHub) -> None:
    """Serve the page at ``/dashboard`` and the snapshots at ``/dashboard/events``."""
    page = dashboard_page()

    async def dashboard() -> Response:
        return Response(page, media_type="text/html; charset=utf-8")

    # Neither is part of the API's OpenAPI document: one is a page for people, the other an
    # endless stream that a schema-driven client could only hang on.
    app.add_api_route(PAGE_PATH, dashboard, methods=["GET"], include_in_schema=False)
    stream = Route(EVENTS_PATH, EventStream(hub), methods=["GET"], include_in_schema=False)
    app.router.routes.append(stream)
