"""Errors of the domain. Adapters translate their library's exceptions into these."""


class UpstreamError(Exception):
    """The upstream gave no usable HTTP answer."""

    kind = "upstream_error"


class UpstreamTimeout(UpstreamError):
    """No complete answer within the attempt's time."""

    kind = "timeout"


class UpstreamUnavailable(UpstreamError):
    """The connection could not be made, was dropped, or the answer was not valid HTTP."""

    kind = "connection_error"


class RateLimitStoreUnavailable(Exception):
    """The rate limiter's storage failed or answered too late; no decision was made."""
