"""Idle latency: one job at a time, enqueue -> handler start -> completion observed by the
enqueuer, with the pool in-process and in another process.

The enqueuer waits for the completion the way jobqueue's clients do, with
``JobQueueService.wait_for_job`` (the finishing event wakes it: in-process directly, across
processes through Redis pub/sub), as SAQ's side waits on SAQ's pub/sub. Polling the job instead
measures the poll: sleeps shorter than 1 ms round up to the event loop's 1 ms timer resolution.

On PostgreSQL the cross-process case runs twice: with Redis, as on SQLite, and without Redis,
where the commit signal (LISTEN/NOTIFY) wakes the worker and the waiting enqueuer.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from benchmarks.common import Child, Context, Outcome, PeakSampler, percentile
from benchmarks.handlers import registry
from benchmarks.scenarios.processing import CONCURRENCY, worker_command
from jobqueue.models import JobStatus
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings
from jobqueue.worker import WorkerPool

#: Poll interval of the worker in the other process when no wake-up reaches it (arq runs at 10 ms
#: in the issue's table); with Redis events a wake-up may arrive sooner.
CROSS_PROCESS_POLL = 0.01


async def measure(enqueue: Any, observe: Any, count: int) -> tuple[list[float], list[float]]:
    """``count`` sequential jobs with a random idle gap between them; (start, done) latencies in s."""
    starts: list[float] = []
    dones: list[float] = []
    for _ in range(count):
        await asyncio.sleep(random.uniform(0, 0.01))
        t0 = time.time()
        handle = await enqueue()
        started_at = await observe(handle)
        dones.append(time.time() - t0)
        starts.append(started_at - t0)
    return starts, dones


def add(outcome: Outcome, label: str, starts: list[float], dones: list[float]) -> None:
    outcome.add(f"{label} enqueue->start p50", percentile(starts, 50) * 1000, "ms")
    outcome.add(f"{label} enqueue->start p99", percentile(starts, 99) * 1000, "ms")
    outcome.add(f"{label} enqueue->done p50", percentile(dones, 50) * 1000, "ms")
    outcome.add(f"{label} enqueue->done p99", percentile(dones, 99) * 1000, "ms")


async def observe_jobqueue(service: JobQueueService, job_id: str) -> float:
    job = await service.wait_for_job(job_id, timeout=30)
    if job.status is not JobStatus.COMPLETED:
        raise RuntimeError(f"job {job_id} did not complete within 30s (it is {job.status.value})")
    return float(job.result_data["t"])


async def cross_process(ctx: Context, count: int, redis_url: str | None, label: str) -> tuple[list[float], list[float], float]:
    """Idle latency with ``jobqueue worker`` in another process; (starts, dones, worker peak RSS)."""
    with ctx.databases.create(f"latency-{label}") as db:
        settings = Settings(database_url=db.url, run_worker=False, redis_url=redis_url)
        async with JobQueueService.open(settings) as service:
            extra = ["--poll-interval", str(CROSS_PROCESS_POLL)]
            if redis_url:
                extra += ["--redis-url", redis_url]
            cmd = worker_command(db.url, CONCURRENCY[ctx.backend], *extra)
            with Child(cmd, ctx.workdir / f"latency-{label}-worker.log") as worker, PeakSampler(worker) as peak:
                # The worker is ready once it has taken a first job.
                await observe_jobqueue(service, await service.enqueue_job("stamp"))
                starts, dones = await measure(
                    lambda: service.enqueue_job("stamp"), lambda job_id: observe_jobqueue(service, job_id), count
                )
    return starts, dones, peak.peak


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("latency")
    count = ctx.scale(500, 100)

    with ctx.databases.create("latency-inproc") as db:
        settings = Settings(database_url=db.url, run_worker=False, redis_url=ctx.redis_url)
        async with JobQueueService.open(settings) as service:
            pool = WorkerPool(service, registry, concurrency=CONCURRENCY[ctx.backend], job_types=["stamp"])
            runner = asyncio.create_task(pool.run())
            try:
                starts, dones = await measure(
                    lambda: service.enqueue_job("stamp"), lambda job_id: observe_jobqueue(service, job_id), count
                )
            finally:
                pool.stop()
                await runner
    add(outcome, "in-process", starts, dones)

    starts, dones, peak = await cross_process(ctx, count, ctx.redis_url, "cross")
    add(outcome, "cross-process", starts, dones)
    outcome.add("cross-process worker peak RSS", peak, "MiB")
    if ctx.backend == "postgresql":
        starts, dones, _ = await cross_process(ctx, count, None, "notify")
        add(outcome, "cross-process without Redis", starts, dones)
    outcome.notes.append(
        f"{count} jobs each; cross-process worker polls every {CROSS_PROCESS_POLL * 1000:g} ms "
        "unless woken; completion awaited with wait_for_job (event-driven)"
        + ("; without Redis the wake-ups are PostgreSQL's LISTEN/NOTIFY commit signal" if ctx.backend == "postgresql" else "")
    )
    return outcome
