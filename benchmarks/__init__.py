"""Benchmarks: `make bench` (benchmarks/bench.py) writes BENCHMARKS.md."""
