"""Adapters: the technologies behind the domain's ports, and the HTTP entry point."""
