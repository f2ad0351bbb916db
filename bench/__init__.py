"""Benchmarks of the registry server: `python -m bench.run`, `python -m bench.migration_bench`."""
