"""Metrics: plain counters per route, exposed as JSON and as Prometheus text."""
