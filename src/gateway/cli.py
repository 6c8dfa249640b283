"""``resilient-gateway``: validate the settings and the route table, wire the app, serve it.

resilient-gateway [--config FILE] [--host H] [--port P] [--workers N]
resilient-gateway check FILE     validate a config offline, print the table it would serve
resilient-gateway schema         print the config file's JSON Schema
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import uvicorn
from dependency_injector import providers
from pydantic import ValidationError
from uvicorn.supervisors import Multiprocess

from adapters.http.server import ClientLimits, GracefulServer, configure, raise_open_file_limit
from adapters.observability import configure_logging, get_logger
from gateway.config import ConfigError, GatewayConfig, json_schema, load_config
from gateway.containers import Container, initial_config
from gateway.describe import describe_table
from gateway.heap import freeze_startup_heap
from gateway.settings import GatewaySettings, describe_error


def main(argv: list[str] | None = None) -> None:
    args_given = sys.argv[1:] if argv is None else argv
    if args_given[:1] == ["check"]:
        check(args_given[1:])
        return
    if args_given[:1] == ["schema"]:
        print(json.dumps(json_schema(), indent=2))
        return
    serve(args_given)


def serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="resilient-gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", help="route table file (YAML or JSON); overrides GATEWAY_CONFIG"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (needs a shared rate-limit store)"
    )
    args = parser.parse_args(argv)
    # Until the server installs its handler, a SIGHUP (a deploy's reload sent too early) would
    # end the process: it is ignored instead.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args.config is not None:
        os.environ["GATEWAY_CONFIG"] = args.config  # workers of --workers N read it too
    settings = _settings()
    table_config = _config(settings)

    soft_before, soft, hard = raise_open_file_limit()
    # Every client connection is a file; so is every upstream and Redis connection, and a few
    # more for the process itself. The connection cap stays below what the process may open.
    reserve = settings.upstream_pool_size + 64  # refused connections linger in these too
    max_connections = max(1, min(settings.max_client_connections, soft - reserve))
    limits = ClientLimits(
        header_timeout_seconds=settings.client_header_timeout_seconds,
        body_timeout_seconds=settings.client_body_timeout_seconds,
        max_connections=max_connections,
    )
    # uvicorn's own X-Forwarded-For handling is off: TRUSTED_PROXIES alone decides the client.
    # WebSocket support is off too ("none"): an upgrade is answered 501 by the app.
    serving: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "proxy_headers": False,
        "server_header": False,
        "access_log": False,
        "log_config": None,
        "ws": "none",
        "timeout_graceful_shutdown": int(settings.request_timeout_seconds) + 1,
    }
    if args.workers > 1:
        if settings.admin_port:
            _refuse(
                f"ADMIN_PORT ({settings.admin_port}) needs one process; with --workers "
                f"{args.workers} each worker has its own breakers and would fight for the port"
            )
        if settings.rate_limit_enabled and not settings.shared_rate_limit:
            print(
                f"resilient-gateway: --workers {args.workers} with "
                "RATE_LIMIT_STORAGE_URL=memory:// would give each worker its own counts and "
                f"silently multiply every client's limit by {args.workers}; set "
                "RATE_LIMIT_STORAGE_URL=redis://host:6379/0 to share them, or run one worker",
                file=sys.stderr,
            )
            raise SystemExit(2)
        config = configure(
            uvicorn.Config(
                "gateway.asgi:app_from_environment",
                factory=True,
                workers=args.workers,
                **serving,
            ),
            limits,
        )
        ValidatingMultiprocess(config, sockets=[config.bind_socket()]).run()
        return

    admin_socket = None
    if settings.admin_port:
        admin_socket = _admin_socket(args.host, args.port, args.workers, settings.admin_port)

    configure_logging(settings.log_level, settings.log_format)
    get_logger("gateway.server").info(
        "open_file_limit",
        soft_limit_at_start=soft_before,
        soft_limit=soft,
        hard_limit=hard,
        max_client_connections=max_connections,
    )
    container = Container()
    container.settings.override(providers.Object(settings))
    container.config.override(providers.Object(table_config))
    tables = container.tables()
    config = configure(uvicorn.Config(container.app(), **serving), limits)
    server = GracefulServer(config)
    server.on_hangup = tables.reload
    if admin_socket is not None:
        admin_config = configure(
            uvicorn.Config(
                container.admin_app(),
                **{**serving, "port": settings.admin_port, "lifespan": "off"},
            ),
            limits,
        )
        server = ServerWithAdmin(config, AdminServer(admin_config), admin_socket)
        server.on_hangup = tables.reload
    # Open dashboard streams end the moment a shutdown begins (their scope's ON_SHUTDOWN_KEY,
    # called by the server protocol), in one process as in every worker of --workers N.
    freeze_startup_heap()
    server.run()
    if not server.started:
        raise SystemExit(1)


def _settings() -> GatewaySettings:
    try:
        return GatewaySettings()
    except ValidationError as error:
        _refuse(describe_error(error))


def _config(settings: GatewaySettings) -> GatewayConfig:
    try:
        return initial_config(settings)
    except ConfigError as error:
        _refuse(str(error))


def check(argv: list[str]) -> None:
    """``resilient-gateway check FILE``: validate offline, print the table; exit 0 or 2."""
    parser = argparse.ArgumentParser(
        prog="resilient-gateway check",
        description="Validate a config file and print the route table it would serve.",
    )
    parser.add_argument("file")
    args = parser.parse_args(argv)
    settings = _settings()
    try:
        config = load_config(args.file, settings)
    except ConfigError as error:
        _refuse(str(error))
    print(describe_table(config))
    print(f"{args.file}: ok, {len(config.routes)} routes, {len(config.upstreams)} upstreams")


class ValidatingMultiprocess(Multiprocess):
    """uvicorn's supervisor, whose SIGHUP restarts the workers only for a valid config file.

    Each worker has its own breakers, so a restart starts them CLOSED (limits in Redis stay).
    """

    def handle_hup(self) -> None:
        try:
            settings = GatewaySettings()
            if not settings.gateway_config:
                print("resilient-gateway: SIGHUP ignored: no GATEWAY_CONFIG file", file=sys.stderr)
                return
            _config(settings)
        except (SystemExit, ValidationError):
            return  # the one-line error is printed; the workers keep the table they have
        super().handle_hup()


class AdminServer(uvicorn.Server):
    """Serves the admin app beside the proxy; the proxy's server owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServerWithAdmin(GracefulServer):
    """The proxy's server, running the admin listener (``ADMIN_PORT``) on the same loop."""

    def __init__(
        self, config: uvicorn.Config, admin: AdminServer, admin_socket: socket.socket
    ) -> None:
        super().__init__(config)
        self._admin = admin
        self._admin_socket = admin_socket

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        admin = asyncio.create_task(self._admin.serve(sockets=[self._admin_socket]))
        try:
            await super().serve(sockets)
        finally:
            self._admin.should_exit = True
            await admin


def _admin_socket(host: str, port: int, workers: int, admin_port: int) -> socket.socket:
    """The admin listener's socket, bound before anything starts, or a one-line refusal."""
    if admin_port == port:
        _refuse(f"ADMIN_PORT ({admin_port}) must differ from the proxy's --port ({port})")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, admin_port), family=family)
    except OSError as error:
        _refuse(f"ADMIN_PORT ({admin_port}) cannot be used on {host}: {error.strerror}")


def _refuse(message: str) -> NoReturn:
    print(f"resilient-gateway: {message}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
