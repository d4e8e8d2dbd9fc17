"""Benchmarks: `python -m bench` (full) or `python -m bench --short` (CI)."""
