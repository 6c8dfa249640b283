"""The JSON log lines, written as bytes when stdout has a binary buffer and as text otherwise."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from adapters.observability import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers[:], root.level = handlers, level


@pytest.mark.parametrize("binary", [True, False], ids=["bytes", "text-only"])
def test_one_json_object_per_line_with_level_and_time(
    binary: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = io.BytesIO()
    stdout: io.TextIOBase = io.TextIOWrapper(raw, encoding="utf-8") if binary else io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    configure_logging("INFO", "json")
    log = get_logger("t")
    log.info("request", request_id="r-1", status=200, odd=object)
    log.debug("hidden")
    stdout.flush()
    text = raw.getvalue().decode() if binary else stdout.getvalue()  # type: ignore[attr-defined]
    lines = text.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["event"] == "request"
    assert (entry["request_id"], entry["status"], entry["level"]) == ("r-1", 200, "info")
    assert entry["timestamp"].endswith("Z")
    assert entry["odd"] == repr(object)


def test_standard_library_records_share_the_format_with_their_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    configure_logging("INFO", "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    entry = json.loads(stdout.getvalue().splitlines()[-1])
    assert entry["event"] == "Exception in ASGI application"
    assert (entry["level"], entry["logger"]) == ("error", "uvicorn.error")
    assert "ValueError: boom" in entry["exception"]
