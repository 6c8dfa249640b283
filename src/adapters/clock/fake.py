"""A fake clock for tests: time moves only when told to, and sleeping moves it.

``sleep()`` advances the clock by the requested time, records the request (so tests can read a
backoff schedule), and yields to the event loop once so concurrent tasks still interleave.
"""

from __future__ import annotations

import asyncio


class FakeClock:
    """Implements ``Clock`` and ``Sleeper``; start it anywhere, move it with ``advance()``."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


async def let_other_tasks_run(rounds: int = 20) -> None:
    """Yield to the event loop ``rounds`` times without moving any clock (for race tests)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
