"""Benchmarks: `python -m bench` runs them all, `python -m bench NAME [options]` one of them.

Each benchmark is a module here with a `main(argv) -> int` that writes
`bench/results/NAME.json` through `bench.common.write_result` (machine, versions, a baseline
measured in the same run, medians of several runs).
"""
