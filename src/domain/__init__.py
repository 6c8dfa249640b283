"""The gateway's rules, free of frameworks: circuit breaker, sliding-window limiter, retry policy.

Everything here is driven through ports (``Clock``, ``UpstreamPort``) so unit tests can run
every rule with fake time and a scripted upstream.
"""
