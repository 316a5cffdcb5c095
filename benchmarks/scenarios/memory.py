"""Memory flat: the worker's resident set after 20k jobs processed versus after 200k, one
long-lived ``jobqueue worker`` process fed in rounds of 20k."""

from __future__ import annotations

from benchmarks.common import Child, Context, Outcome, wait_until_done
from benchmarks.scenarios.processing import CONCURRENCY, enqueue_many, worker_command
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("memory")
    round_size = ctx.scale(20_000, 2_000)
    rounds = 10
    with ctx.databases.create("memory") as db:
        settings = Settings(database_url=db.url, run_worker=False)
        rss: list[float] = []
        async with JobQueueService.open(settings) as service:
            command = worker_command(db.url, CONCURRENCY[ctx.backend], "--poll-interval", "0.05")
            with Child(command, ctx.workdir / "memory-worker.log") as worker:
                for done_rounds in range(1, rounds + 1):
                    await enqueue_many(service, "noop", round_size)
                    await wait_until_done(db, round_size * done_rounds, timeout=300, workers=[worker])
                    if not worker.alive():
                        raise RuntimeError(f"worker died:\n{worker.tail()}")
                    rss.append(worker.rss_mb())
                peak = worker.peak_rss_mb()
    first, last = rss[0], rss[-1]
    outcome.add(f"worker RSS after {round_size:,}", first, "MiB")
    outcome.add(f"worker RSS after {round_size * rounds:,}", last, "MiB")
    outcome.add("growth", last / first - 1, "ratio")
    outcome.add("worker peak RSS", peak, "MiB")
    outcome.notes.append("RSS per round: " + ", ".join(f"{x:.1f}" for x in rss))
    return outcome
