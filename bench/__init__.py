"""Benchmarks: `python -m bench` prints one JSON document (DESIGN §8)."""
