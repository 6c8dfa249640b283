"""Every error the gateway itself answers, as ``application/problem+json`` (RFC 9457).

One place maps error kinds to their stable ``type`` URI, title and status; the README's table of
problem types lists the same kinds.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.responses import Response

PROBLEM_TYPE = "application/problem+json"

PROBLEM_KINDS: dict[str, tuple[str, str]] = {
    # kind: (type URI, title)
    "rate-limited": (
        "https://iana.org/assignments/http-problem-types#quota-exceeded",
        "Request quota exceeded",
    ),
    "circuit-open": ("urn:resilient-gateway:problem:circuit-open", "Upstream circuit is open"),
    "upstream-unavailable": (
        "urn:resilient-gateway:problem:upstream-unavailable",
        "Upstream unavailable",
    ),
    "upstream-saturated": (
        "urn:resilient-gateway:problem:upstream-saturated",
        "Upstream at its concurrency limit",
    ),
    "rate-limit-unavailable": (
        "urn:resilient-gateway:problem:rate-limit-unavailable",
        "Rate limiter unavailable",
    ),
    "circuit-forced-open": (
        "urn:resilient-gateway:problem:circuit-forced-open",
        "Upstream circuit forced open by an operator",
    ),
    "admin-unauthorized": (
        "urn:resilient-gateway:problem:admin-unauthorized",
        "Admin token missing or wrong",
    ),
    "not-found": ("urn:resilient-gateway:problem:not-found", "Not found"),
    "method-not-allowed": (
        "urn:resilient-gateway:problem:method-not-allowed",
        "Method not allowed",
    ),
    "invalid-request": ("urn:resilient-gateway:problem:invalid-request", "Invalid request"),
    "invalid-path": ("urn:resilient-gateway:problem:invalid-path", "Path with dot segments"),
    "http-error": ("urn:resilient-gateway:problem:http-error", "HTTP error"),
    "internal-error": ("urn:resilient-gateway:problem:internal-error", "Internal error"),
    "headers-too-large": (
        "urn:resilient-gateway:problem:headers-too-large",
        "Request header fields too large",
    ),
    "body-too-large": ("urn:resilient-gateway:problem:body-too-large", "Request body too large"),
    "request-timeout": ("urn:resilient-gateway:problem:request-timeout", "Request timeout"),
    "upstream-bad-answer": (
        "urn:resilient-gateway:problem:upstream-bad-answer",
        "Bad answer from the upstream",
    ),
    "upgrade-not-supported": (
        "urn:resilient-gateway:problem:upgrade-not-supported",
        "Protocol upgrade not supported",
    ),
    "too-many-connections": (
        "urn:resilient-gateway:problem:too-many-connections",
        "Too many client connections",
    ),
    "dashboard-busy": (
        "urn:resilient-gateway:problem:dashboard-busy",
        "Too many dashboard streams",
    ),
}


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up and at least 1."""
    return str(max(1, math.ceil(seconds)))


def problem_response(
    kind: str,
    status: int,
    detail: str,
    instance: str | None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response of a known kind."""
    type_uri, title = PROBLEM_KINDS[kind]
    body: dict[str, Any] = {"type": type_uri, "title": title, "status": status, "detail": detail}
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_TYPE,
    )
