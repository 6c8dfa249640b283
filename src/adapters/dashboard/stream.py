"""``GET /dashboard/events``: the snapshots as Server-Sent Events, and the hub that feeds them.

``DashboardHub`` builds one snapshot per interval in one background task and keeps it encoded as
one SSE frame; every open stream sends that same frame, so the cost of a snapshot does not grow
with the number of viewers. A stream whose last frame is still the newest (nothing changed: an
idle gateway) sends a heartbeat comment instead, which keeps proxies from timing it out.

At most ``max_streams`` are open at once; one more gets a 503 problem at once. A stream ends when
its client goes away (``http.disconnect``, watched for by its own task) or when the hub closes:
``close()`` is synchronous so the server can call it the moment a shutdown begins, before it
waits for open responses (``GracefulServer.on_shutdown_begin``); every stream then ends its
response cleanly and the connection closes, so a shutdown never waits on a dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from adapters.dashboard.snapshot import SnapshotBuilder
from adapters.http.context import ON_SHUTDOWN_KEY, context_of, request_id_of
from adapters.http.problems import problem_response
from adapters.observability import get_logger
from domain.ports import Sleeper

HEARTBEAT = b": heartbeat\n\n"
RECONNECT_MILLISECONDS = 1000
EVENTS_ROUTE_LABEL = "/dashboard/events"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each frame on at once
]


class DashboardHub:
    """Publishes one snapshot per interval to every subscribed stream."""

    def __init__(
        self,
        builder: SnapshotBuilder,
        sleeper: Sleeper,
        interval_seconds: float,
        max_streams: int,
    ) -> None:
        self._builder = builder
        self._sleeper = sleeper
        self.interval_seconds = interval_seconds
        self.max_streams = max_streams
        self._body = b""
        self.frame = b""
        """The newest snapshot as one SSE frame; the same object until the snapshot changes."""
        self._subscribers: set[asyncio.Event] = set()
        self._open_streams = 0
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger("gateway.dashboard")

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def open_streams(self) -> int:
        return self._open_streams

    def publish(self) -> None:
        """Build a snapshot now and wake every stream."""
        body = orjson.dumps(self._builder.build())
        if body != self._body:
            self._body = body
            self.frame = b"data: " + body + b"\n\n"
        for wake in self._subscribers:
            wake.set()

    async def start(self) -> None:
        """Publish the first snapshot and start publishing one per interval."""
        self.publish()
        self._task = asyncio.create_task(self._run(), name="dashboard-snapshots")

    async def _run(self) -> None:
        while not self._closed:
            await self._sleeper.sleep(self.interval_seconds)
            if self._closed:
                return
            try:
                self.publish()
            except Exception:  # a bug in one snapshot must not stop every later one
                self._log.exception("dashboard_snapshot_failed")

    def close(self) -> None:
        """End every stream and refuse new ones; safe to call more than once."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        for wake in self._subscribers:
            wake.set()

    async def aclose(self) -> None:
        self.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def try_open_stream(self, wake: asyncio.Event) -> bool:
        if self._closed or self._open_streams >= self.max_streams:
            return False
        self._open_streams += 1
        self._subscribers.add(wake)
        return True

    def close_stream(self, wake: asyncio.Event) -> None:
        self._subscribers.discard(wake)
        self._open_streams -= 1


class EventStream:
    """The ASGI endpoint of ``GET /dashboard/events``."""

    def __init__(self, hub: DashboardHub) -> None:
        self._hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self._hub
        context_of(scope)["route"] = EVENTS_ROUTE_LABEL  # its label in the log and the metrics
        scope[ON_SHUTDOWN_KEY] = hub.close  # the server ends every stream when it stops
        wake = asyncio.Event()
        if not hub.try_open_stream(wake):
            await self._refuse(scope, receive, send)
            return
        client_gone = False

        async def watch_for_disconnect() -> None:
            nonlocal client_gone
            while (await receive())["type"] != "http.disconnect":
                pass
            client_gone = True
            wake.set()

        watcher = asyncio.create_task(watch_for_disconnect())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            sent = hub.frame
            await self._body(send, b"retry: %d\n\n" % RECONNECT_MILLISECONDS + sent)
            while True:
                await wake.wait()
                wake.clear()
                if client_gone:
                    return
                if hub.closed:
                    break
                frame = hub.frame
                await self._body(send, HEARTBEAT if frame is sent else frame)
                sent = frame
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away while a frame was being written
            return
        finally:
            hub.close_stream(wake)
            watcher.cancel()

    @staticmethod
    async def _body(send: Send, body: bytes) -> None:
        message: dict[str, Any] = {"type": "http.response.body", "body": body, "more_body": True}
        await send(message)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self._hub
        if hub.closed:
            detail = "The gateway is shutting down."
        else:
            detail = (
                f"{hub.max_streams} dashboard streams are open, the most allowed "
                "(DASHBOARD_MAX_STREAMS); close one or try again later."
            )
        response = problem_response(
            "dashboard-busy",
            503,
            detail,
            request_id_of(scope),
            headers={"retry-after": "5"},
        )
        await response(scope, receive, send)
