"""Processing with a concurrency limit on the job type versus without (issue 12): what the claim's
flow control costs when a type has a limit that does not bind.

Each round is a fresh database with the processing scenario's jobs queued, drained by one
``jobqueue worker --burst`` process at the processing concurrency; in the limited rounds the type
has ``max_running`` = ``HEADROOM`` x that concurrency, so the limit never holds a job back and
only its bookkeeping is measured (on SQLite the counts under the write lock; on PostgreSQL the
lock on the type's control row and the counts in the claim statement). The order alternates
too (without-with, then with-without): whichever drains second in a pair was measured slower,
by up to half, on this machine (the first database's files are still being removed).
"""

from __future__ import annotations

import statistics

from benchmarks.common import Context, Outcome
from benchmarks.scenarios.processing import CONCURRENCY, JOBS, drain, enqueue_many
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

ROUNDS = 2
#: The limit as a multiple of the worker's concurrency: high enough never to bind.
HEADROOM = 10


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("limits")
    count = ctx.scale(*JOBS[ctx.backend])
    rounds = ctx.scale(ROUNDS, ROUNDS)
    limit = HEADROOM * CONCURRENCY[ctx.backend]
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(rounds):
        for limited in (False, True) if round_ % 2 == 0 else (True, False):
            with ctx.databases.create("limited" if limited else "unlimited") as db:
                async with JobQueueService.open(Settings(database_url=db.url, run_worker=False)) as service:
                    if limited:
                        await service.set_limits("noop", max_running=limit)
                    await enqueue_many(service, "noop", count)
                rate, _ = await drain(ctx, db, count, 1, "limited" if limited else "unlimited")
            rates[limited].append(rate)
    without, with_limit = statistics.mean(rates[False]), statistics.mean(rates[True])
    outcome.add("process without limit", without, "jobs/s")
    outcome.add("process with max_running", with_limit, "jobs/s")
    outcome.add("limited / unlimited", with_limit / without, "ratio")
    outcome.notes.append(
        f"{count} jobs per round, concurrency {CONCURRENCY[ctx.backend]}, max_running {limit}, {rounds} "
        f"rounds (without-with, then with-without), mean; without: {', '.join(f'{r:,.0f}' for r in rates[False])}; "
        f"with: {', '.join(f'{r:,.0f}' for r in rates[True])} jobs/s"
    )
    return outcome
