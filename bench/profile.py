"""Where the gateway's time goes under load: py-spy samples the gateway process while wrk drives it.

Starts the backend (failures off) and the gateway as ``bench/load.py`` does, loads the gateway
with wrk at 32 connections, and samples it with ``py-spy record`` (native frames off, idle off).
Prints the functions with the most samples, inclusive and exclusive, folded by module, and
writes the collapsed stacks (for a flame graph) beside the results.

    .venv/bin/python bench/profile.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

from load import BIN, ROOT, ensure_wrk, free_port, server

OUTPUT = ROOT / "bench" / "results" / "profile.collapsed"


def summarise(collapsed: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = [frame.split(" (")[0] + " (" + _module(frame) + ")" for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        exclusive[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "exclusive:"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in exclusive.most_common(top)]
    return "\n".join(lines)


def _module(frame: str) -> str:
    location = frame.partition(" (")[2].rstrip(")")
    path = location.rsplit(":", 1)[0]
    marker = "site-packages/"
    if marker in path:
        return path.split(marker, 1)[1]
    return path.replace(str(ROOT) + "/", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    wrk = ensure_wrk()
    backend_port, gateway_port = free_port(), free_port()
    backend_url = f"http://127.0.0.1:{backend_port}"
    logs = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    with ExitStack() as stack:
        stack.enter_context(
            server(
                [str(BIN / "flaky-backend"), "--port", str(backend_port)],
                {"FLAKY_FAILURE_RATE": "0", "FLAKY_SLOW_RATE": "0", "LOG_LEVEL": "WARNING"},
                f"{backend_url}/health",
                logs / "backend.log",
            )
        )
        gateway = stack.enter_context(
            server(
                [str(BIN / "resilient-gateway"), "--port", str(gateway_port)],
                {"BACKEND_URL": backend_url, "RATE_LIMIT_REQUESTS_PER_WINDOW": "10000000"},
                f"http://127.0.0.1:{gateway_port}/health",
                logs / "gateway.log",
            )
        )
        url = f"http://127.0.0.1:{gateway_port}/api/v1/data"
        load = subprocess.Popen(
            [wrk, "-t1", "-c32", f"-d{args.seconds + 2}s", url], stdout=subprocess.DEVNULL
        )
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(BIN / "py-spy"),
                "record",
                "--pid",
                str(gateway.pid),
                "--duration",
                str(args.seconds),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(OUTPUT),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        load.wait()
    print(summarise(OUTPUT, args.top))
    print(f"\ncollapsed stacks in {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
