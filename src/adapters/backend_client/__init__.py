"""Adapters for the ``UpstreamPort``: the real HTTP client and a scripted fake."""
