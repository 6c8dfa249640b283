"""``resilient-gateway``: validate the settings, wire the app, serve it with uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from dependency_injector import providers
from pydantic import ValidationError

from gateway.containers import Container
from gateway.settings import GatewaySettings, describe_error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="resilient-gateway", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    args = parser.parse_args(argv)
    try:
        settings = GatewaySettings()
    except ValidationError as error:
        print(f"resilient-gateway: {describe_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    container = Container()
    container.settings.override(providers.Object(settings))
    uvicorn.run(
        container.app(),
        host=args.host,
        port=args.port,
        proxy_headers=False,
        server_header=False,
        access_log=False,
        timeout_graceful_shutdown=int(settings.request_timeout_seconds) + 1,
    )


if __name__ == "__main__":
    main()
