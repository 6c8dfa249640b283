"""The route table a config describes, as text for ``resilient-gateway check``."""

from __future__ import annotations

from gateway.config import GatewayConfig, RouteConfig, UpstreamConfig


def _match(route: RouteConfig) -> str:
    if route.path is not None:
        target = route.target_path
        return route.path if target == route.path else f"{route.path} -> {target}"
    prefix = f"{route.match_path.rstrip('/')}/**" if route.match_path != "/" else "/**"
    if route.rewrite_prefix is None:
        return prefix
    return f"{prefix} -> {route.target_path or ''}/**"


def _route_policies(route: RouteConfig) -> str:
    retry = route.retry
    parts = [f"deadline {route.request_timeout_seconds:g}s"]
    if retry.max_retries:
        who = "all methods" if retry.non_idempotent else "idempotent"
        statuses = ",".join(map(str, retry.on_status)) or "-"
        parts.append(f"retry {retry.max_retries}x on {statuses} ({who})")
    else:
        parts.append("no retry")
    limit = route.rate_limit
    if limit.enabled:
        parts.append(
            f"limit {limit.requests_per_window}/{limit.window_seconds:g}s per {limit.key}"
            f" ({limit.algorithm})"
        )
    else:
        parts.append("no rate limit")
    parts.append(f"body <= {route.max_request_body_bytes}B")
    if route.preserve_host:
        parts.append("preserve host")
    return ", ".join(parts)


def _upstream_policies(upstream: UpstreamConfig) -> str:
    breaker = upstream.circuit_breaker
    opens = (
        f"{breaker.failure_threshold} failures in a row"
        if breaker.mode == "consecutive"
        else f"{breaker.failure_rate_threshold:g}% of {breaker.sliding_window_size}"
        f" {'calls' if breaker.sliding_window_type == 'count' else 's'}"
    )
    return (
        f"{upstream.base_url} ({upstream.client}), attempt {upstream.timeout_seconds:g}s, "
        f"pool {upstream.pool_size}, in flight <= {upstream.max_concurrent_requests}, "
        f"breaker opens on {opens} for {breaker.recovery_timeout_seconds:g}s, "
        f"retry budget {upstream.retry_budget.percent:g}%"
    )


def describe_table(config: GatewayConfig) -> str:
    """The routes in the order they are listed (matching does not depend on it), then the
    upstreams they share."""
    rows = [("ROUTE", "MATCH", "METHODS", "UPSTREAM", "POLICIES")]
    rows.extend(
        (route.name, _match(route), ",".join(route.methods), route.upstream, _route_policies(route))
        for route in config.routes
    )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[4]
        for row in rows
    ]
    lines.append("")
    lines.append("UPSTREAMS")
    for name, upstream in config.upstreams.items():
        lines.append(f"  {name}: {_upstream_policies(upstream)}")
    return "\n".join(lines)
