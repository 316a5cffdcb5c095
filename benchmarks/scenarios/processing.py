"""Processing: N no-op jobs already queued, ``jobqueue worker`` in its own process; jobs/s from
the first claim to the last completion (both read from the jobs table).

The sizes differ per backend: on SQLite the issue's 50,000 jobs at concurrency 64; on PostgreSQL
10,000 jobs at concurrency 20, the workload the PostgreSQL peers run (``pg_peers``).
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.common import PYTHON, Child, Context, Outcome, PeakSampler, wait_until_done
from benchmarks.databases import Database
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

#: Jobs (full run, --quick) and running jobs per worker process, per backend.
JOBS = {"sqlite": (50_000, 5_000), "postgresql": (10_000, 2_000)}
CONCURRENCY = {"sqlite": 64, "postgresql": 20}
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


def worker_command(db_url: str, concurrency: int, *extra: str) -> list[str]:
    return [
        PYTHON, "-m", "jobqueue", "worker", "--database-url", db_url, "--concurrency", str(concurrency),
        "--registry", "benchmarks.handlers:registry", "--job-types", "noop,stamp", "--log-level", "warning",
        *extra,
    ]


async def drain(
    ctx: Context, db: Database, count: int, processes: int, label: str, *, supervised: bool = False
) -> tuple[float, float]:
    """``processes`` burst workers drain ``count`` queued jobs; (jobs/s, peak RSS of the first).

    ``supervised``: one ``jobqueue worker --processes N`` (the shipped supervisor and its
    children) instead of N separate ``jobqueue worker`` processes.
    """
    concurrency = CONCURRENCY[ctx.backend]
    if supervised:
        command = worker_command(db.url, concurrency, "--burst", "--processes", str(processes))
        workers = [Child(command, ctx.workdir / f"{label}-supervisor.log")]
    else:
        workers = [
            Child(worker_command(db.url, concurrency, "--burst"), ctx.workdir / f"{label}-worker-{i}.log")
            for i in range(processes)
        ]
    try:
        with PeakSampler(workers[0]) as peak:
            await wait_until_done(db, count, timeout=600, workers=workers)
            while any(worker.alive() for worker in workers):
                await asyncio.sleep(0.05)
        for worker in workers:
            if worker.proc.returncode != 0:
                raise RuntimeError(f"worker failed:\n{worker.tail()}")
    finally:
        for worker in workers:
            worker.stop()
    first, last, done = await asyncio.to_thread(db.processing_window)
    return done / (last - first), peak.peak


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("processing")
    count = ctx.scale(*JOBS[ctx.backend])
    with ctx.databases.create("processing") as db:
        settings = Settings(database_url=db.url, run_worker=False)
        async with JobQueueService.open(settings) as service:
            enqueue_rate = await enqueue_many(service, "noop", count)
        outcome.add(f"enqueue (Python API, {PRODUCERS} tasks)", enqueue_rate, "jobs/s")
        rate, peak = await drain(ctx, db, count, 1, "processing")
    outcome.add("process", rate, "jobs/s")
    outcome.add("worker peak RSS", peak, "MiB")
    if ctx.backend == "sqlite":
        durability = f"journal_mode=WAL synchronous={settings.synchronous}"
    else:
        durability = f"pool of {settings.database_pool_size} connections, no ANALYZE"
    outcome.notes.append(f"{count} jobs, concurrency {CONCURRENCY[ctx.backend]}, {durability}")
    return outcome
