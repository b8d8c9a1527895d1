"""Benchmarks of phigate against peer tools (benchmark-only dependencies: the `bench` extra)."""
