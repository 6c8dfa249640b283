"""Storages behind the ``RateLimiter`` port: in process memory, and Redis shared by replicas."""
