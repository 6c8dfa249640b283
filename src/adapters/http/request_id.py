"""Pure ASGI middleware giving every request an id and every response ``X-Request-ID``.

A well-formed id sent by the client (1 to 128 safe characters) is kept, so a request can be
followed across systems; anything else is replaced by a new random id. The id is put in
``scope["state"]["request_id"]`` for the endpoints.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_WELL_FORMED = re.compile(rb"[A-Za-z0-9._~:/+=-]{1,128}")
_HEADER = b"x-request-id"


def request_id_of(scope: Scope) -> str:
    """The id the middleware gave this request."""
    state = scope.get("state") or {}
    request_id = state.get("request_id")
    return request_id if isinstance(request_id, str) else ""


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                if _WELL_FORMED.fullmatch(value):
                    request_id = value.decode("ascii")
                break
        if request_id is None:
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _HEADER]
                headers.append((_HEADER, encoded))
                message["headers"] = headers
            await send(message)

        await self._app(scope, receive, send_with_id)
