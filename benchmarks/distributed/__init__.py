"""Distributed execution benchmark: ``.venv/bin/python -m benchmarks.distributed`` (see docs/benchmarks.md)."""
