"""Use cases: run one client request through limiter -> breaker -> retries -> upstream."""
