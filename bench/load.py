"""The gateway under real load, beside the backend itself and the simplest alternative.

On loopback, this starts these servers as their own processes:

- ``direct``: the flaky backend, failures and slowness off;
- ``gateway``: the gateway in front of it, configured as in production (rate limiting on with a
  limit too high to trigger, breaker, retries, retry budget, bulkhead, metrics, and one JSON log
  line per request written to a file), with its default upstream client (httptools);
- ``gateway-aiohttp``: the same with ``UPSTREAM_CLIENT=aiohttp``;
- ``gateway-httpx``: the same with ``UPSTREAM_CLIENT=httpx`` (httpx's API over httpcore);
- ``gateway-20-routes``: the default gateway with a 20-route table loaded (``ROUTE_TABLE``:
  exact paths, prefixes, a catch-all, two upstreams), loaded on a prefix route that rewrites
  ``/bench/flaky-data`` to ``/flaky-data``: the matcher's walk and the rewrite on every request;
- with ``--redis URL``, ``gateway-redis``: the same with the limiter's counts in that Redis;
- ``baseline``: ``bench/baseline_proxy.py``, a bare FastAPI route with one ``httpx.AsyncClient``.

With ``--dashboard-stream`` a second default gateway (``gateway-watched``) is loaded in the same
rounds, with one live-dashboard stream (``/dashboard/events``) open to it for the whole run, as a
person watching it would: ``gateway`` and ``gateway-watched`` side by side are what a watched
dashboard costs, measured in one run.

Each is loaded in turn with ``wrk`` at 1 and at 32 connections, alternating, for several rounds;
the median round is reported. CPU per request is read from ``/proc/<pid>/stat`` (user + system,
children included) of the server under load and of the backend behind it. The table is printed
and written to ``bench/results/latest.md``.

    .venv/bin/python bench/load.py [--rounds 3] [--seconds 5] [--dashboard-stream]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "latest.md"
TICKS = os.sysconf("SC_CLK_TCK")
CONNECTIONS = (1, 32)
WATCHED = "gateway-watched"
"""With ``--dashboard-stream``: a second default gateway, with one dashboard stream open to it."""
GATEWAYS: dict[str, dict[str, str]] = {
    "gateway": {"UPSTREAM_CLIENT": "httptools"},
    "gateway-aiohttp": {"UPSTREAM_CLIENT": "aiohttp"},
    "gateway-httpx": {"UPSTREAM_CLIENT": "httpx"},
    "gateway-20-routes": {"UPSTREAM_CLIENT": "httptools", "GATEWAY_CONFIG": "{route_table}"},
}
ROUTED = "gateway-20-routes"
ROUTED_PATH = "/bench/flaky-data"


def route_table(backend_url: str) -> str:
    """20 routes over two upstreams (both the backend): 9 exact, 10 prefixes, a catch-all."""
    lines = [
        "upstreams:",
        f"  primary: {{url: '{backend_url}'}}",
        f"  secondary: {{url: '{backend_url}', circuit_breaker: {{failure_threshold: 10}}}}",
        "routes:",
        "  - {name: bench, path_prefix: /bench, rewrite_prefix: '', upstream: primary}",
        "  - {name: all, path_prefix: /, methods: [GET], upstream: secondary}",
    ]
    lines.extend(
        f"  - {{name: exact-{n}, path: /api/v{n}/items, upstream: primary,"
        " upstream_path: /flaky-data}"
        for n in range(9)
    )
    for n in range(9):
        upstream = "primary" if n % 2 else "secondary"
        lines.append(
            f"  - {{name: prefix-{n}, path_prefix: /svc/{n}/api, rewrite_prefix: /x,"
            f" upstream: {upstream}, rate_limit: {{key: 'header:X-API-Key'}}}}"
        )
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system time of ``pid`` and its waited-for children (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command: state is fields[0]; utime, stime, cutime, cstime are fields 11-14.
    return sum(int(value) for value in fields[11:15]) / TICKS


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: {url} exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench: {url} did not answer within {timeout:.0f} s")


@contextmanager
def server(
    command: list[str], env: dict[str, str], health_url: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(health_url, process)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class DashboardWatcher:
    """One ``/dashboard/events`` stream kept open in a thread, counting the frames it reads."""

    def __init__(self, url: str) -> None:
        self.frames = 0
        self._stop = threading.Event()
        self._url = url
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        with urllib.request.urlopen(self._url, timeout=30) as stream:
            if stream.status != 200:
                raise RuntimeError(f"{self._url} answered {stream.status}")
            while not self._stop.is_set():
                chunk = stream.read1(65536)
                if not chunk:
                    return
                self.frames += chunk.count(b"\n\n")

    def stop(self) -> None:
        self._stop.set()


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk is missing; installing Debian's package", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run([*sudo, *step], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: could not install wrk (apt-get install wrk)")
    return found


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu: float
    backend_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def server_us(self) -> float:
        return self.server_cpu / self.requests * 1e6

    @property
    def backend_us(self) -> float:
        return self.backend_cpu / self.requests * 1e6


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_latency(text: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if not match:
        raise SystemExit(f"bench: no {percentile}% latency in wrk's output:\n{text}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(text: str) -> tuple[int, float, int]:
    """Requests, seconds, and non-2xx answers plus socket errors, from wrk's summary."""
    match = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", text)
    if not match:
        raise SystemExit(f"bench: unexpected wrk output:\n{text}")
    seconds = float(match[2]) / (1000 if match[3] == "ms" else 1)
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        errors += int(non_2xx[1])
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return int(match[1]), seconds, errors


def load(wrk: str, url: str, connections: int, seconds: int, pids: tuple[int, int]) -> Run:
    server_pid, backend_pid = pids
    before = cpu_seconds(server_pid), cpu_seconds(backend_pid)
    output = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    after = cpu_seconds(server_pid), cpu_seconds(backend_pid)
    requests, elapsed, errors = parse_wrk(output)
    return Run(
        requests,
        elapsed,
        errors,
        parse_latency(output, "50"),
        parse_latency(output, "99"),
        after[0] - before[0],
        after[1] - before[1],
    )


def median_run(runs: list[Run]) -> Run:
    """The round with the median throughput (a real round, not a mix of rounds)."""
    ordered = sorted(runs, key=lambda run: run.rate)
    return ordered[len(ordered) // 2]


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def table(targets: list[str], results: dict[tuple[str, int], list[Run]]) -> str:
    lines = [
        "| target | conns | req/s | x direct | p50 ms | x direct | p99 ms | x direct "
        "| p99 - direct ms | server CPU µs/req | x direct | backend CPU µs/req | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for connections in CONNECTIONS:
        direct = median_run(results["direct", connections])
        for target in targets:
            run = median_run(results[target, connections])
            backend = "-" if target == "direct" else f"{run.backend_us:,.0f}"
            lines.append(
                f"| {target} | {connections} | {run.rate:,.0f} | {ratio(run.rate, direct.rate)} "
                f"| {run.p50_ms:.2f} | {ratio(run.p50_ms, direct.p50_ms)} "
                f"| {run.p99_ms:.2f} | {ratio(run.p99_ms, direct.p99_ms)} "
                f"| {run.p99_ms - direct.p99_ms:+.2f} "
                f"| {run.server_us:,.0f} | {ratio(run.server_us, direct.server_us)} "
                f"| {backend} | {sum(r.errors for r in results[target, connections])} |"
            )
    return "\n".join(lines)


def describe_machine(wrk: str) -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
    first = (version.splitlines() or ["wrk"])[0].split(" Copyright")[0]
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {first.strip()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--redis", metavar="URL", help="add a gateway whose limiter keeps its counts in this Redis"
    )
    parser.add_argument(
        "--dashboard-stream",
        action="store_true",
        help="keep one /dashboard/events stream open to each gateway during the whole run",
    )
    args = parser.parse_args()
    wrk = ensure_wrk()
    gateways = dict(GATEWAYS)
    if args.redis:
        gateways["gateway-redis"] = {
            "UPSTREAM_CLIENT": "httptools",
            "RATE_LIMIT_STORAGE_URL": args.redis,
            "RATE_LIMIT_KEY_PREFIX": f"bench:{os.getpid()}:",
        }
    if args.dashboard_stream:  # the same gateway twice, one watched: an A/B in one run
        gateways[WATCHED] = dict(GATEWAYS["gateway"])
    targets = ["direct", *gateways, "baseline"]
    ports = {target: free_port() for target in targets}
    backend_url = f"http://127.0.0.1:{ports['direct']}"
    urls = {"direct": f"{backend_url}/flaky-data"}
    urls.update({t: f"http://127.0.0.1:{ports[t]}/api/v1/data" for t in targets[1:]})
    urls[ROUTED] = f"http://127.0.0.1:{ports[ROUTED]}{ROUTED_PATH}"
    started = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    table_file = logs / "routes.yaml"
    table_file.write_text(route_table(backend_url))
    gateways = {
        name: {key: value.format(route_table=table_file) for key, value in env.items()}
        for name, env in gateways.items()
    }
    with ExitStack() as stack:
        backend = stack.enter_context(
            server(
                [str(BIN / "flaky-backend"), "--port", str(ports["direct"])],
                {"FLAKY_FAILURE_RATE": "0", "FLAKY_SLOW_RATE": "0", "LOG_LEVEL": "WARNING"},
                f"{backend_url}/health",
                logs / "backend.log",
            )
        )
        processes = {
            name: stack.enter_context(
                server(
                    [str(BIN / "resilient-gateway"), "--port", str(ports[name])],
                    {
                        **env,
                        "BACKEND_URL": backend_url,
                        "RATE_LIMIT_ENABLED": "true",
                        "RATE_LIMIT_REQUESTS_PER_WINDOW": "10000000",
                        "LOG_LEVEL": "INFO",
                        "LOG_FORMAT": "json",
                    },
                    f"http://127.0.0.1:{ports[name]}/health",
                    logs / f"{name}.log",
                )
            )
            for name, env in gateways.items()
        }
        baseline = stack.enter_context(
            server(
                [
                    str(BIN / "uvicorn"),
                    "bench.baseline_proxy:app",
                    "--port",
                    str(ports["baseline"]),
                    "--no-access-log",
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--log-level",
                    "warning",
                ],
                {"BACKEND_URL": backend_url},
                f"http://127.0.0.1:{ports['baseline']}/api/v1/data",
                logs / "baseline.log",
            )
        )
        watchers = {
            name: DashboardWatcher(f"http://127.0.0.1:{ports[name]}/dashboard/events")
            for name in gateways
            if name == WATCHED
        }
        pids = {name: (process.pid, backend.pid) for name, process in processes.items()}
        pids["direct"] = (backend.pid, backend.pid)
        pids["baseline"] = (baseline.pid, backend.pid)
        for target in targets:  # connections, pools and caches warm before anything counts
            load(wrk, urls[target], 32, args.warmup, pids[target])
        results: dict[tuple[str, int], list[Run]] = {
            (target, connections): [] for target in targets for connections in CONNECTIONS
        }
        for round_number in range(args.rounds):
            for connections in CONNECTIONS:
                for target in targets:
                    run = load(wrk, urls[target], connections, args.seconds, pids[target])
                    results[target, connections].append(run)
                    print(
                        f"round {round_number + 1}/{args.rounds} {target:8} c={connections:<2}"
                        f" {run.rate:8,.0f} req/s  p99 {run.p99_ms:6.2f} ms"
                        f"  server {run.server_us:5,.0f} µs/req",
                        flush=True,
                    )
        log_lines = sum(1 for _ in (logs / "gateway.log").open("rb"))
        for watcher in watchers.values():
            watcher.stop()
    watched = (
        f" `{WATCHED}` is `gateway` again with one dashboard stream open to it throughout ("
        + ", ".join(f"{name}: {w.frames:,} frames read" for name, w in watchers.items())
        + ")."
        if watchers
        else ""
    )
    elapsed = time.monotonic() - started
    report = "\n".join(
        [
            "# Load benchmark (`make bench`, `bench/load.py`)",
            "",
            f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {describe_machine(wrk)}; "
            f"{args.rounds} rounds of {args.seconds:g} s per row, alternating targets, median "
            f"round shown; wrk -t1 on the same machine as the servers; {elapsed:.0f} s in all.",
            "",
            table(targets, results),
            "",
            "`direct` is the flaky backend (failures off), `gateway` the gateway in front of it "
            "with every feature on, `gateway-aiohttp` and `gateway-httpx` the same with "
            "UPSTREAM_CLIENT=aiohttp or httpx, `gateway-20-routes` the same with a 20-route "
            f"table loaded, requests on a rewriting prefix route ({ROUTED_PATH}), "
            + (
                f"`gateway-redis` the same with its limiter's counts in Redis ({args.redis}), "
                if args.redis
                else ""
            )
            + "`baseline` a bare FastAPI route with one httpx.AsyncClient. "
            "Server CPU is the process under load (user + system, children included, from "
            "/proc); backend CPU is the backend's share of the same requests. The gateway wrote "
            f"{log_lines:,} JSON log lines during the run.{watched}",
            "",
        ]
    )
    print()
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(
        f"written to {args.output.relative_to(ROOT) if args.output.is_absolute() else args.output}"
    )


if __name__ == "__main__":
    main()
