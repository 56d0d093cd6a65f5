"""Flick's benchmarks: run by hand (`.venv/bin/python -m bench.engine`), never by the test suite.

Each prints its figures against the targets in BENCHMARKS.md and stops by itself.
"""
