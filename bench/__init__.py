"""Benchmarks: they print figures and assert nothing (targets live in their docstrings)."""
