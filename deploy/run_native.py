"""Run the compose services natively, with the compose file's own commands and environment.

Where no Docker engine runs (this project's CI), this is how the deployment is exercised: each
service in ``docker-compose.yml`` is started as a local process with its ``command`` and
``environment``, on free loopback ports, with service names rewritten to 127.0.0.1. Then the
given command (``./verify.sh`` by default) runs with ``GATEWAY_URL`` and ``BACKEND_URL`` set,
both services are stopped, and the command's exit code is returned.

    python deploy/run_native.py                      # ./verify.sh against the pair
    python deploy/run_native.py --set gateway.FAILURE_THRESHOLD=1000 -- ./verify.sh
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVICES = ("flaky-backend", "gateway")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def compose_services(path: Path) -> dict[str, dict[str, object]]:
    services: dict[str, dict[str, object]] = yaml.safe_load(path.read_text())["services"]
    return services


def native_command(command: list[str], port: int) -> list[str]:
    """The compose command with a local host and port."""
    args = list(command)
    args[0] = str(BIN / args[0])
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    return args


_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's ``${NAME}`` and ``${NAME:-default}``, from ``environ``."""
    return _VARIABLE.sub(lambda m: environ.get(m.group(1)) or (m.group(2) or ""), text)


def native_environment(env: dict[str, object], ports: dict[str, int]) -> dict[str, str]:
    """The compose environment with service names pointing at the local ports."""
    result = {}
    for name, value in env.items():
        text = interpolate("" if value is None else str(value), dict(os.environ))
        for service, port in ports.items():
            container_port = {"flaky-backend": 8001, "gateway": 8000}[service]
            text = text.replace(f"//{service}:{container_port}", f"//127.0.0.1:{port}")
        result[name] = text
    return result


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"run_native: {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"run_native: {url} did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--compose-file", type=Path, default=ROOT / "docker-compose.yml")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SERVICE.VAR=VALUE",
        help="override one variable of one service",
    )
    parser.add_argument("command", nargs="*", default=[str(ROOT / "verify.sh")])
    args = parser.parse_args()

    services = compose_services(args.compose_file)
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        target, value = item.split("=", 1)
        service, variable = target.split(".", 1)
        overrides.setdefault(service, {})[variable] = value
    ports = {name: free_port() for name in SERVICES}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in SERVICES:  # the backend first: the gateway depends on it
            spec = services[name]
            env = native_environment(dict(spec.get("environment") or {}), ports)  # type: ignore[call-overload]
            env.update(overrides.get(name, {}))
            process = subprocess.Popen(
                native_command(list(spec["command"]), ports[name]),  # type: ignore[call-overload]
                env={**os.environ, **env},
            )
            processes.append(process)
            wait_healthy(f"http://127.0.0.1:{ports[name]}", process)
        env = {
            **os.environ,
            "GATEWAY_URL": f"http://127.0.0.1:{ports['gateway']}",
            "BACKEND_URL": f"http://127.0.0.1:{ports['flaky-backend']}",
        }
        return subprocess.run(args.command, env=env, check=False).returncode
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    raise SystemExit(main())
