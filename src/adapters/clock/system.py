"""The real clock: ``time.monotonic`` for readings, ``asyncio.sleep`` for waiting."""

from __future__ import annotations

import asyncio
import time


class SystemClock:
    """Implements the ``Clock`` and ``Sleeper`` ports with the process's monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
