"""Engine benchmarks: ``.venv/bin/python -m benchmarks.engine`` (see docs/benchmarks.md)."""
