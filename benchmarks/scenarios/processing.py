"""Processing: N no-op jobs already queued, ``jobqueue worker`` at concurrency 64 in its own
process; jobs/s from the first claim to the last completion (both read from the jobs table)."""

from __future__ import annotations

import asyncio
import time

from benchmarks.common import (
    PYTHON,
    Child,
    Context,
    Outcome,
    PeakSampler,
    database_url,
    processing_window,
    wait_until_done,
)
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

CONCURRENCY = 64
#: Concurrent enqueuers; group commit batches what they send in the same moment.
PRODUCERS = 50


async def enqueue_many(service: JobQueueService, job_type: str, count: int, producers: int = PRODUCERS) -> float:
    """Enqueue ``count`` jobs through the Python API from ``producers`` tasks; returns jobs/s."""
    per_task, extra = divmod(count, producers)

    async def producer(n: int) -> None:
        for _ in range(n):
            await service.enqueue_job(job_type)

    started = time.perf_counter()
    await asyncio.gather(*(producer(per_task + (i < extra)) for i in range(producers)))
    return count / (time.perf_counter() - started)


def worker_command(db_url: str, *extra: str) -> list[str]:
    return [
        PYTHON, "-m", "jobqueue", "worker", "--database-url", db_url, "--concurrency", str(CONCURRENCY),
        "--registry", "benchmarks.handlers:registry", "--job-types", "noop,stamp", "--log-level", "warning",
        *extra,
    ]


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("processing")
    count = ctx.scale(50_000, 5_000)
    db = ctx.workdir / "processing.db"
    settings = Settings(database_url=database_url(db), run_worker=False)
    async with JobQueueService.open(settings) as service:
        enqueue_rate = await enqueue_many(service, "noop", count)
    outcome.add("enqueue (Python API, 50 tasks)", enqueue_rate, "jobs/s")
    with Child(worker_command(database_url(db), "--burst"), ctx.workdir / "processing-worker.log") as worker:
        with PeakSampler(worker) as peak:
            await wait_until_done(db, count, timeout=600, worker=worker)
            while worker.alive():
                await asyncio.sleep(0.05)
        if worker.proc.returncode != 0:
            raise RuntimeError(f"worker failed:\n{worker.tail()}")
    first, last, done = processing_window(db)
    outcome.add("process", done / (last - first), "jobs/s")
    outcome.add("worker peak RSS", peak.peak, "MiB")
    outcome.notes.append(
        f"{count} jobs, concurrency {CONCURRENCY}, journal_mode=WAL synchronous={settings.synchronous}"
    )
    return outcome
