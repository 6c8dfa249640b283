"""Check that gateway replicas share one rate limit through Redis (run by `make docker-test`).

Sets the backend healthy through /chaos (and puts its settings back afterwards), then sends
one and a half times the limit of requests at once, alternating between the replicas, all from
one client. No replica gets more than the limit, so replicas counting alone would admit every
request; shared, exactly the limit is admitted across them all. Exit status 0 when it held.
  python deploy/shared_limit_check.py --limit 20 http://127.0.0.1:8010 http://127.0.0.1:8011
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter

import httpx

ROUTE = "/api/v1/data"


async def check(gateways: list[str], backend: str, limit: int) -> bool:
    token = os.environ.get("CHAOS_TOKEN", "local-chaos-token")
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10.0) as client:
        saved = (await client.get(f"{backend}/chaos")).json()
        healthy = {"failure_rate": 0, "slow_rate": 0, "latency_seconds": 0, "fail_next": 0}
        (await client.put(f"{backend}/chaos", json=healthy, headers=auth)).raise_for_status()
        try:
            targets = [gateways[n % len(gateways)] for n in range(limit * 3 // 2)]
            answers = await asyncio.gather(*(client.get(f"{url}{ROUTE}") for url in targets))
        finally:
            (await client.put(f"{backend}/chaos", json=saved, headers=auth)).raise_for_status()
    admitted = Counter(url for url, a in zip(targets, answers, strict=True) if a.status_code != 429)
    refused = Counter(url for url, a in zip(targets, answers, strict=True) if a.status_code == 429)
    others = Counter(a.status_code for a in answers if a.status_code not in (200, 429))
    for url in gateways:
        print(f"  {url}: {admitted[url]} admitted, {refused[url]} answered 429")
    total = sum(admitted.values())
    print(
        f"  admitted across all replicas: {total} (limit {limit}); other statuses: {dict(others)}"
    )
    # Each replica alone would admit all it was sent (no more than the limit): 150 % in all.
    assert all(targets.count(url) <= limit for url in gateways), "send fewer per replica"
    return total == limit and not others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gateways", nargs="+", help="base URLs of the replicas")
    parser.add_argument("--backend", default="http://127.0.0.1:8001")
    parser.add_argument("--limit", type=int, required=True, help="RATE_LIMIT_REQUESTS_PER_WINDOW")
    args = parser.parse_args()
    ok = asyncio.run(check(args.gateways, args.backend, args.limit))
    print("[PASS] one limit shared by the replicas" if ok else "[FAIL] the limit was not shared")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
