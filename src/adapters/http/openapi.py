"""What the OpenAPI schema says of the gateway's own responses: problem bodies and headers."""

from __future__ import annotations

from typing import Any

from adapters.http.problems import PROBLEM_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def _header(description: str, schema_type: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": schema_type}}


REQUEST_ID_HEADER = {"X-Request-ID": _header("The request's id: the client's own when valid.")}
RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": _header('IETF draft policy, e.g. `"default";q=100;w=60`.'),
    "RateLimit": _header('IETF draft state, e.g. `"default";r=99;t=60`.'),
    "RateLimit-Limit": _header("Requests allowed per window.", "integer"),
    "RateLimit-Remaining": _header("Requests left right now.", "integer"),
    "RateLimit-Reset": _header("Seconds until the oldest counted request leaves.", "integer"),
}
RETRY_AFTER = {"Retry-After": _header("Seconds to wait before trying again.", "integer")}


def _problem(description: str, headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers,
        "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def proxy_route_responses() -> dict[int | str, dict[str, Any]]:
    """The responses of a proxied route, as ``add_api_route(responses=...)`` takes them."""
    common = {**REQUEST_ID_HEADER, **RATE_LIMIT_HEADERS}
    return {
        200: {
            "description": "The upstream's answer, passed through (any status it chose).",
            "headers": common,
            "content": {"*/*": {"schema": {}}},
        },
        429: _problem("Over the client's rate limit.", {**common, **RETRY_AFTER}),
        503: _problem("Circuit open, or every attempt upstream failed.", {**common, **RETRY_AFTER}),
        "default": {"description": "Another status passed through from the upstream."},
    }


def gateway_error_responses() -> dict[int | str, dict[str, Any]]:
    return {
        404: _problem("No such route.", REQUEST_ID_HEADER),
        405: _problem("Method not allowed on this route.", REQUEST_ID_HEADER),
    }


def metrics_responses() -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "JSON counters, or Prometheus text when the Accept header prefers it.",
            "headers": REQUEST_ID_HEADER,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
        }
    }
