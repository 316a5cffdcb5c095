"""The jobqueue benchmark suite: ``python -m benchmarks [--quick] [--only NAME ...]``.

Each scenario module exposes ``run(ctx) -> Outcome``. Servers, workers and load generators run
as separate processes wherever the real deployment would, so on a 2-core machine the load
generator does not starve the server it measures.
"""
