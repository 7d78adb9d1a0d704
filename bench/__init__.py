"""Benchmarks: ``python -m bench [eval|backtest|all]`` (or ``make bench``)."""
