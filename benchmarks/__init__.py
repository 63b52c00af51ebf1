"""Benchmarks of xaipipe: ``python -m benchmarks.run`` (see README, "Performance")."""
