"""The PostgreSQL peers in the same run: procrastinate and pgqueuer on the same server, each on a
fresh database of its own with its schema installed by its own tool, the processing scenario's
no-op workload (10,000 jobs, 20 running at once, 50 enqueuing tasks, pools of 10 connections),
their workers in their own process (uvloop) as jobqueue's is.

Enqueue: jobs/s of one call per job from 50 tasks (jobqueue's figure is the processing
scenario's). Processing: the first handler start to the moment the library's drain mode returned
(every outcome written), checked against the library's own tables afterwards.

ANALYZE runs on each peer's database after its enqueue, before its worker starts: on a server
with autovacuum on (the default) the peer's tables would have been analyzed by then; jobqueue
gets no ANALYZE, since it must not depend on statistics.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time

from benchmarks.common import PYTHON, Child, Context, Outcome, PeakSampler, read_json_line
from benchmarks.databases import Database
from benchmarks.pg_peers import SYSTEMS, UNFINISHED_SQL, enqueuer, install_schema
from benchmarks.scenarios.processing import CONCURRENCY, JOBS, PRODUCERS


async def _enqueue_many(system: str, dsn: str, count: int) -> float:
    async with enqueuer(system, dsn) as enqueue:
        per_task, extra = divmod(count, PRODUCERS)

        async def producer(n: int) -> None:
            for _ in range(n):
                await enqueue()

        started = time.perf_counter()
        await asyncio.gather(*(producer(per_task + (i < extra)) for i in range(PRODUCERS)))
        return count / (time.perf_counter() - started)


async def run_peer(ctx: Context, system: str, db: Database, outcome: Outcome) -> None:
    count = ctx.scale(*JOBS["postgresql"])
    concurrency = CONCURRENCY["postgresql"]
    await asyncio.to_thread(install_schema, system, db.url)
    outcome.add(f"{system} enqueue", await _enqueue_many(system, db.url, count), "jobs/s")
    await asyncio.to_thread(db.execute, "ANALYZE")
    command = [PYTHON, "-m", "benchmarks.pg_peers", system, db.url, "--concurrency", str(concurrency)]
    with Child(command, ctx.workdir / f"{system}-worker.log") as worker:
        with PeakSampler(worker) as peak:
            code = await asyncio.to_thread(worker.proc.wait, 600)
        if code != 0:
            raise RuntimeError(f"worker exited with {code}:\n{worker.tail()}")
    result = read_json_line(worker.log_path.read_text())
    unfinished = await asyncio.to_thread(db.scalar, UNFINISHED_SQL[system])
    if result["ran"] != count or unfinished:
        raise RuntimeError(f"{result['ran']} of {count} handlers ran, {unfinished} jobs left unfinished")
    outcome.add(f"{system} process", count / (result["last"] - result["first"]), "jobs/s")
    outcome.add(f"{system} worker peak RSS", peak.peak, "MiB")


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("peers")
    if ctx.backend != "postgresql":
        outcome.skipped = "the PostgreSQL peers run with --backend postgresql"
        return outcome
    missing = [system for system in SYSTEMS if importlib.util.find_spec(system) is None]
    for system in SYSTEMS:
        if system in missing:
            outcome.notes.append(f"{system}: skipped, not installed (pip install -e '.[bench]')")
            continue
        try:
            with ctx.databases.create(f"peer-{system}") as db:
                await run_peer(ctx, system, db, outcome)
        except Exception as exc:  # keep the other peer's figures and say what broke
            outcome.notes.append(f"{system}: failed: {type(exc).__name__}: {exc}")
    if len(missing) == len(SYSTEMS):
        outcome.skipped = "neither procrastinate nor pgqueuer is installed (pip install -e '.[bench]')"
    outcome.notes.append(
        f"{ctx.scale(*JOBS['postgresql'])} jobs, concurrency {CONCURRENCY['postgresql']}, {PRODUCERS} enqueuing tasks; "
        "ANALYZE on the peers' databases (not on jobqueue's); uvloop in every process"
    )
    return outcome
