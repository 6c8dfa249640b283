"""``make run``: start the flaky backend and the gateway together, in the foreground.

Both run as child processes with their own console scripts; the gateway is pointed at the
backend through ``BACKEND_URL``. Ctrl-C (or SIGTERM) stops both; if either exits, the other is
stopped too and the exit code is passed on.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import FrameType

BIN = Path(sys.executable).parent


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_seconds: float) -> bool:
    import time

    deadline = time.monotonic() + timeout_seconds  # noqa: TID251
    while time.monotonic() < deadline:  # noqa: TID251
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)  # noqa: TID251
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devrun", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--gateway-port", type=int, default=8000)
    parser.add_argument("--backend-port", type=int, default=8001)
    args = parser.parse_args(argv)

    backend_url = f"http://{args.host}:{args.backend_port}"
    gateway_env = {
        "LOG_FORMAT": "console",
        **os.environ,
        "BACKEND_URL": os.environ.get("BACKEND_URL", backend_url),
    }
    backend = subprocess.Popen(
        [str(BIN / "flaky-backend"), "--host", args.host, "--port", str(args.backend_port)]
    )
    children = [backend]

    def stop(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if not _wait_healthy(f"{backend_url}/health", backend, 30):
        print("devrun: the flaky backend did not become healthy", file=sys.stderr)
        stop(signal.SIGINT, None)
        return backend.wait() or 1
    gateway = subprocess.Popen(
        [str(BIN / "resilient-gateway"), "--host", args.host, "--port", str(args.gateway_port)],
        env=gateway_env,
    )
    children.append(gateway)
    gateway_url = f"http://{args.host}:{args.gateway_port}"
    if _wait_healthy(f"{gateway_url}/health", gateway, 30):
        print(
            f"devrun: gateway on {gateway_url} (try {gateway_url}/api/v1/data), "
            f"backend on {backend_url} (chaos: {backend_url}/chaos). Ctrl-C stops both.",
            flush=True,
        )
    codes = []
    while True:
        for child in children:
            try:
                code = child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            codes.append(code)
            stop(signal.SIGINT, None)
            codes.extend(other.wait() for other in children)
            return next((c for c in codes if c not in (0, -signal.SIGTERM)), 0)


if __name__ == "__main__":
    raise SystemExit(main())
