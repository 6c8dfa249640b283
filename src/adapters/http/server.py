"""How the gateway is served by uvicorn: problem+json parse errors and a clean SIGTERM.

- A request that is not valid HTTP (an unknown method such as ``BREW``, a malformed header line)
  never reaches the app: uvicorn's httptools protocol answers it with a plain-text 400. Every
  error the gateway produces is ``application/problem+json``, so ``ProblemHttpToolsProtocol``
  writes that body instead.
- On SIGTERM or SIGINT uvicorn stops accepting, lets requests in flight finish (bounded by
  ``timeout_graceful_shutdown``), runs the lifespan shutdown (which closes the upstream pool), and
  then re-raises the signal, so the process dies by it. ``GracefulServer`` keeps all of that but
  returns normally, so the process exits 0 as orchestrators expect of a clean stop.
- uvicorn waits for open responses before it shuts down, and an event stream never ends by
  itself. ``GracefulServer.on_shutdown_begin`` holds callbacks run the moment a shutdown begins,
  before that wait (the dashboard's hub ends its streams there).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from adapters.http.problems import PROBLEM_KINDS, PROBLEM_TYPE


def bad_request_body(message: str, request_id: str) -> bytes:
    type_uri, _ = PROBLEM_KINDS["invalid-request"]
    problem = {
        "type": type_uri,
        "title": "Malformed HTTP request",
        "status": 400,
        "detail": message,
        "instance": request_id,
    }
    return json.dumps(problem, separators=(",", ":")).encode()


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        request_id = uuid.uuid4().hex
        body = bad_request_body(msg, request_id)
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + PROBLEM_TYPE.encode() + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"x-request-id: " + request_id.encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.on_shutdown_begin: list[Callable[[], None]] = []
        """Called, in order, when a shutdown begins: before open responses are waited for."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for callback in self.on_shutdown_begin:
            callback()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
