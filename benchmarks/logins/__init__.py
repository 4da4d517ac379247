"""Login benchmark (see docs/benchmarks.md)."""
