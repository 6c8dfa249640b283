"""``resilient-gateway``: validate the settings, wire the app, serve it with uvicorn."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import uvicorn
from dependency_injector import providers
from pydantic import ValidationError
from uvicorn.supervisors import Multiprocess

from adapters.http.server import ClientLimits, GracefulServer, configure, raise_open_file_limit
from adapters.observability import configure_logging, get_logger
from gateway.containers import Container
from gateway.heap import freeze_startup_heap
from gateway.settings import GatewaySettings, describe_error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="resilient-gateway", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (needs a shared rate-limit store)"
    )
    args = parser.parse_args(argv)
    try:
        settings = GatewaySettings()
    except ValidationError as error:
        print(f"resilient-gateway: {describe_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None

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
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return

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
    config = configure(uvicorn.Config(container.app(), **serving), limits)
    server = GracefulServer(config)
    dashboard = container.dashboard()
    if dashboard is not None:  # its streams end at once, so a shutdown never waits on them
        server.on_shutdown_begin.append(dashboard.close)
    freeze_startup_heap()
    server.run()
    if not server.started:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
