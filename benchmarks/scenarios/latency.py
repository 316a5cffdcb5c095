"""Idle latency: one job at a time, enqueue -> handler start -> completion observed by the
enqueuer, with the pool in-process and in another process.

The enqueuer waits for the completion the way jobqueue's clients do, with
``JobQueueService.wait_for_job`` (the finishing event wakes it: in-process directly, across
processes through Redis pub/sub), as SAQ's side waits on SAQ's pub/sub. Polling the job instead
measures the poll: sleeps shorter than 1 ms round up to the event loop's 1 ms timer resolution.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from benchmarks.common import Child, Context, Outcome, PeakSampler, database_url, percentile
from benchmarks.handlers import registry
from benchmarks.scenarios.processing import worker_command
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


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("latency")
    count = ctx.scale(500, 100)

    db = ctx.workdir / "latency-inproc.db"
    settings = Settings(database_url=database_url(db), run_worker=False, redis_url=ctx.redis_url)
    async with JobQueueService.open(settings) as service:
        pool = WorkerPool(service, registry, concurrency=64, job_types=["stamp"])
        runner = asyncio.create_task(pool.run())
        try:
            starts, dones = await measure(
                lambda: service.enqueue_job("stamp"), lambda job_id: observe_jobqueue(service, job_id), count
            )
        finally:
            pool.stop()
            await runner
    add(outcome, "in-process", starts, dones)

    db = ctx.workdir / "latency-cross.db"
    settings = Settings(database_url=database_url(db), run_worker=False, redis_url=ctx.redis_url)
    async with JobQueueService.open(settings) as service:
        cmd = worker_command(database_url(db), "--poll-interval", str(CROSS_PROCESS_POLL), "--redis-url", ctx.redis_url)
        with Child(cmd, ctx.workdir / "latency-worker.log") as worker:
            with PeakSampler(worker) as peak:
                # The worker is ready once it has taken a first job.
                await observe_jobqueue(service, await service.enqueue_job("stamp"))
                starts, dones = await measure(
                    lambda: service.enqueue_job("stamp"), lambda job_id: observe_jobqueue(service, job_id), count
                )
    add(outcome, "cross-process", starts, dones)
    outcome.add("cross-process worker peak RSS", peak.peak, "MiB")
    outcome.notes.append(
        f"{count} jobs each; cross-process worker polls every {CROSS_PROCESS_POLL * 1000:g} ms "
        "unless woken; completion awaited with wait_for_job (event-driven)"
    )
    return outcome
