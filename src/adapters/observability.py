"""Structured logs with structlog: one processor chain, JSON by default, console for humans.

``configure_logging`` also routes the standard library's records (uvicorn's, aiohttp's) through
the same chain, so everything the process prints is in one format. ``BreakerTransitionReporter``
is what a breaker calls on each transition: it counts it and logs it as its own event.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

from adapters.event_log import EventLog
from adapters.metrics.counters import RouteCounters, UpstreamCounters
from domain.breaker import BreakerState

LOG_FORMATS = ("json", "console")


def _renderer(log_format: str) -> Any:
    if log_format == "console":
        return structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    return structlog.processors.JSONRenderer(serializer=_text_json)


def _bytes_json(event: Any, **_: Any) -> bytes:
    # orjson instead of json: the request line is written on every request (bench/README.md).
    return orjson.dumps(event, default=repr)


def _text_json(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=repr).decode()


def configure_logging(level: str = "INFO", log_format: str = "json") -> None:
    """Set up structlog and the stdlib root logger to write ``log_format`` lines to stdout."""
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    factory: Any
    binary = getattr(sys.stdout, "buffer", None)
    if log_format == "console":
        renderer, factory = _renderer(log_format), structlog.WriteLoggerFactory(file=sys.stdout)
    elif binary is not None:  # each line is one write of bytes, flushed at once
        renderer = structlog.processors.JSONRenderer(serializer=_bytes_json)
        factory = structlog.BytesLoggerFactory(file=binary)
    else:  # a text-only stdout (a test harness, an embedding program)
        renderer, factory = _renderer(log_format), structlog.WriteLoggerFactory(file=sys.stdout)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _renderer(log_format),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


class BreakerTransitionReporter:
    """Counts and logs each transition of one breaker, and adds it to ``events``."""

    def __init__(
        self,
        counters: RouteCounters | UpstreamCounters,
        events: EventLog | None = None,
        upstream: str | None = None,
    ) -> None:
        self._counters = counters
        self._log = get_logger("gateway.breaker")
        self._events = events
        self._upstream = upstream

    def __call__(self, previous: BreakerState, current: BreakerState) -> None:
        self._counters.breaker_transitioned(previous, current)
        self._log.warning(
            "breaker_transition",
            upstream=self._upstream,
            route=self._counters.route,
            from_state=previous.value,
            to_state=current.value,
        )
        if self._events is not None:
            self._events.append(
                "breaker_transition",
                upstream=self._upstream,
                route=self._counters.route,
                from_state=previous.value,
                to_state=current.value,
            )
