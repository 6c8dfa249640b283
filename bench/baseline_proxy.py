"""The baseline: the pass-through most examples show, a FastAPI route and one ``httpx.AsyncClient``.

No limiter, no breaker, no retries, no logs, no metrics: only what a proxy cannot do without.
``make bench`` serves it with the same uvicorn (uvloop, httptools) as the gateway, so the table
compares the gateway with the simplest alternative, not with a different server.

    BACKEND_URL=http://127.0.0.1:8001 uvicorn bench.baseline_proxy:app --port 8002
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response

BACKEND_URL = os.environ.get("BACKEND_URL", "http://127.0.0.1:8001")
client: httpx.AsyncClient | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global client
    client = httpx.AsyncClient(base_url=BACKEND_URL)
    yield
    await client.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/api/v1/data")
async def data(request: Request) -> Response:
    assert client is not None
    upstream = await client.get("/flaky-data", params=request.query_params)
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type"),
    )
