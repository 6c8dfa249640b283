"""A scripted upstream for tests: each call takes the next outcome from a script.

An outcome is an ``UpstreamResponse``, an ``UpstreamError`` to raise, or an int status, or one
of those wrapped in ``Delayed`` (answered after that long on the fake clock; a delay at least
the attempt's timeout is a timeout). When the script runs out, the ``default`` outcome repeats.
``gate``, when set, makes every call wait on that event first (for concurrency tests), and
``elapse`` moves a fake clock per call (to model slow answers without sleeping).
``record_calls=False`` keeps no history (for floods)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from adapters.clock.fake import FakeClock
from domain.errors import UpstreamError, UpstreamTimeout
from domain.ports import UpstreamRequest, UpstreamResponse


@dataclass(frozen=True, slots=True)
class Delayed:
    """An outcome that arrives ``seconds`` later on the fake clock."""

    outcome: UpstreamResponse | UpstreamError | int
    seconds: float


Outcome = UpstreamResponse | UpstreamError | int | Delayed


class FakeUpstream:
    """Implements ``UpstreamPort`` from a script of outcomes, recording every call."""

    def __init__(
        self,
        script: Iterable[Outcome] = (),
        *,
        default: Outcome = 200,
        clock: FakeClock | None = None,
        elapse_seconds: float = 0.0,
        record_calls: bool = True,
    ) -> None:
        self._script: deque[Outcome] = deque(script)
        self._default = default
        self._clock = clock
        self._elapse_seconds = elapse_seconds
        self.calls: list[tuple[UpstreamRequest, float]] = []
        self._record_calls = record_calls
        self.gate: asyncio.Event | None = None
        self.in_flight = 0

    async def start(self) -> None:
        """Nothing to open; present so the fake can stand in for the real adapter."""

    async def aclose(self) -> None:
        """Nothing to close."""

    def push(self, *outcomes: Outcome) -> None:
        self._script.extend(outcomes)

    @property
    def requests(self) -> list[UpstreamRequest]:
        """The requests received so far, oldest first."""
        return [request for request, _ in self.calls]

    async def send(self, request: UpstreamRequest, timeout_seconds: float) -> UpstreamResponse:
        if self._record_calls:
            self.calls.append((request, timeout_seconds))
        scripted = self._script.popleft() if self._script else self._default
        elapse = self._elapse_seconds
        if isinstance(scripted, Delayed):
            outcome, elapse = scripted.outcome, scripted.seconds
        else:
            outcome = scripted
        self.in_flight += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self._clock is not None and elapse:
                if elapse >= timeout_seconds:
                    self._clock.advance(timeout_seconds)
                    raise UpstreamTimeout(f"no answer in {timeout_seconds:.3f}s")
                self._clock.advance(elapse)
        finally:
            self.in_flight -= 1
        if isinstance(outcome, UpstreamError):
            raise outcome
        if isinstance(outcome, int):
            return UpstreamResponse(outcome, (("content-type", "application/json"),), b"{}")
        return outcome
