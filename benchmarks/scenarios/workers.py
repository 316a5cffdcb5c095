"""Two worker processes versus one on the same queue: does a second process add throughput, or
do the processes only share the database's?

Each round is a fresh database with the processing scenario's jobs queued, drained by
``jobqueue worker --burst --processes 1`` or ``--processes 2`` (the shipped supervisor; each
process at the processing concurrency); jobs/s from the first claim to the last completion.
Rounds alternate (one, two, one, two...) so both sides see the same machine state.
"""

from __future__ import annotations

import statistics

from benchmarks.common import Context, Outcome
from benchmarks.scenarios.processing import CONCURRENCY, JOBS, drain, enqueue_many
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

ROUNDS = 2


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("workers")
    count = ctx.scale(*JOBS[ctx.backend])
    rounds = ctx.scale(ROUNDS, 1)
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for processes in (1, 2):
            with ctx.databases.create(f"workers-{processes}") as db:
                async with JobQueueService.open(Settings(database_url=db.url, run_worker=False)) as service:
                    await enqueue_many(service, "noop", count)
                rate, _ = await drain(ctx, db, count, processes, f"workers-{processes}", supervised=True)
            rates[processes].append(rate)
    one, two = statistics.mean(rates[1]), statistics.mean(rates[2])
    outcome.add("one worker process", one, "jobs/s")
    outcome.add("two worker processes", two, "jobs/s")
    outcome.add("two / one", two / one, "ratio")
    outcome.notes.append(
        f"{count} jobs per round, concurrency {CONCURRENCY[ctx.backend]} per process, {rounds} alternating "
        f"round(s), mean; one: {', '.join(f'{r:,.0f}' for r in rates[1])}; "
        f"two: {', '.join(f'{r:,.0f}' for r in rates[2])} jobs/s"
    )
    return outcome
