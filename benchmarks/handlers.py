"""Handlers of the benchmark's jobs, for in-process pools and ``jobqueue worker --registry``."""

from __future__ import annotations

import time

from jobqueue.worker import JobContext, Registry

registry = Registry()


@registry.handler("noop")
async def noop(ctx: JobContext) -> None:
    return None


@registry.handler("stamp")
async def stamp(ctx: JobContext) -> dict[str, float]:
    """Returns when the handler started (epoch seconds), for enqueue -> start latency."""
    return {"t": time.time()}
