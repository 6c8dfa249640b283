"""Clocks: the only place that reads real time or really waits."""

from adapters.clock.fake import FakeClock
from adapters.clock.system import SystemClock

__all__ = ["FakeClock", "SystemClock"]
