"""``inferloop bench``: the worker measured beside a hand-written peer, faust's floor, raw Triton and a naive
consumer, in one run (:mod:`cli.bench.run`)."""

from cli.bench.run import BenchResult, run_bench

__all__ = ["BenchResult", "run_bench"]
