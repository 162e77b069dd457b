"""Benchmarks: each prints this project's numbers against a baseline measured in the same run."""
