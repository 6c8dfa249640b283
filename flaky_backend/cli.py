"""``flaky-backend``: serve the flaky backend with uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn
from pydantic import ValidationError

from adapters.observability import configure_logging
from flaky_backend.app import create_app
from flaky_backend.settings import BackendSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="flaky-backend", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on")
    args = parser.parse_args(argv)
    try:
        settings = BackendSettings()
    except ValidationError as error:
        item = error.errors()[0]
        name = "FLAKY_" + "_".join(str(p) for p in item["loc"]).upper()
        print(
            f"flaky-backend: invalid setting {name}={item.get('input')}: {item['msg']}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    # The backend shares the gateway's log setup (LOG_LEVEL, LOG_FORMAT), so both read alike.
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"), os.environ.get("LOG_FORMAT", "json"))
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        access_log=False,
        server_header=False,
        log_config=None,
    )


if __name__ == "__main__":
    main()
