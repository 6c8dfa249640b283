"""Errors of the domain. Adapters translate their library's exceptions into these."""


class UpstreamError(Exception):
    """The upstream gave no usable HTTP answer."""

    kind = "upstream_error"
    retryable = True
    """Whether another attempt may help: a timeout or a dropped connection may pass, an answer
    that breaks the protocol or the gateway's bounds will most likely come again."""


class UpstreamTimeout(UpstreamError):
    """No complete answer within the attempt's time."""

    kind = "timeout"


class UpstreamUnavailable(UpstreamError):
    """The connection could not be made, was dropped, or the answer was not valid HTTP."""

    kind = "connection_error"


class UpstreamBadAnswer(UpstreamError):
    """The upstream answered, but not with an answer the gateway may pass on: a status outside
    100-599, an unrequested ``101``, too many interim ``1xx`` answers, broken framing, or a
    header section or body over the configured bounds. Counted by the breaker as a failure and
    never retried."""

    kind = "bad_answer"
    retryable = False


class RateLimitStoreUnavailable(Exception):
    """The rate limiter's storage failed or answered too late; no decision was made."""
