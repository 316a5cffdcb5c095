"""The PostgreSQL peers in the same run: procrastinate and pgqueuer on the same server, each on a
fresh database of its own with its schema installed by its own tool, the processing scenario's
no-op workload (10,000 jobs, 20 running at once, 50 enqueuing tasks, pools of 10 connections),
their workers in their own process (uvloop) as jobqueue's is.

Enqueue: jobs/s of one call per job from 50 tasks. Processing: the first handler start to the
moment the library's drain mode returned (every outcome written), checked against the library's
own tables afterwards. jobqueue runs in the same rounds, alternating with the peers, measured as
the processing scenario measures it (Python API enqueue, ``jobqueue worker --burst``).

ANALYZE runs on each peer's database after its enqueue, before its worker starts: on a server
with autovacuum on (the default) the peer's tables would have been analyzed by then; jobqueue
gets no ANALYZE, since it must not depend on statistics.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import time

from benchmarks.common import PYTHON, Child, Context, Outcome, PeakSampler, read_json_line
from benchmarks.databases import Database
from benchmarks.pg_peers import SYSTEMS, UNFINISHED_SQL, enqueuer, install_schema
from benchmarks.scenarios.processing import CONCURRENCY, JOBS, PRODUCERS, drain, enqueue_many
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

#: Rounds alternating jobqueue and each peer: on a shared machine the load drifts by tens of
#: percent within minutes, and a ratio of figures taken apart would measure the drift.
ROUNDS = 2


async def _enqueue_many(system: str, dsn: str, count: int) -> float:
    async with enqueuer(system, dsn) as enqueue:
        per_task, extra = divmod(count, PRODUCERS)

        async def producer(n: int) -> None:
            for _ in range(n):
                await enqueue()

        started = time.perf_counter()
        await asyncio.gather(*(producer(per_task + (i < extra)) for i in range(PRODUCERS)))
        return count / (time.perf_counter() - started)


async def _peer_round(ctx: Context, system: str, db: Database, count: int) -> tuple[float, float, float]:
    """One peer on a fresh database: (enqueue jobs/s, process jobs/s, worker peak RSS)."""
    await asyncio.to_thread(install_schema, system, db.url)
    enqueue_rate = await _enqueue_many(system, db.url, count)
    await asyncio.to_thread(db.execute, "ANALYZE")
    command = [PYTHON, "-m", "benchmarks.pg_peers", system, db.url, "--concurrency", str(CONCURRENCY["postgresql"])]
    with Child(command, ctx.workdir / f"{system}-worker.log") as worker, PeakSampler(worker) as peak:
        code = await asyncio.to_thread(worker.proc.wait, 600)
        if code != 0:
            raise RuntimeError(f"worker exited with {code}:\n{worker.tail()}")
    result = read_json_line(worker.log_path.read_text())
    unfinished = await asyncio.to_thread(db.scalar, UNFINISHED_SQL[system])
    if result["ran"] != count or unfinished:
        raise RuntimeError(f"{result['ran']} of {count} handlers ran, {unfinished} jobs left unfinished")
    return enqueue_rate, count / (result["last"] - result["first"]), peak.peak


async def _jobqueue_round(ctx: Context, db: Database, count: int) -> tuple[float, float, float]:
    """jobqueue on a fresh database, as the processing scenario measures it."""
    async with JobQueueService.open(Settings(database_url=db.url, run_worker=False)) as service:
        enqueue_rate = await enqueue_many(service, "noop", count)
    rate, peak = await drain(ctx, db, count, 1, "jobqueue-vs-peers")
    return enqueue_rate, rate, peak


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("peers")
    if ctx.backend != "postgresql":
        outcome.skipped = "the PostgreSQL peers run with --backend postgresql"
        return outcome
    count = ctx.scale(*JOBS["postgresql"])
    rounds = ctx.scale(ROUNDS, 1)
    missing = [system for system in SYSTEMS if importlib.util.find_spec(system) is None]
    for system in missing:
        outcome.notes.append(f"{system}: skipped, not installed (pip install -e '.[bench]')")
    systems = ["jobqueue", *(system for system in SYSTEMS if system not in missing)]
    measured: dict[str, list[tuple[float, float, float]]] = {system: [] for system in systems}
    failed: set[str] = set()
    for _ in range(rounds):
        for system in systems:
            if system in failed:
                continue
            try:
                with ctx.databases.create(f"peer-{system}") as db:
                    if system == "jobqueue":
                        measured[system].append(await _jobqueue_round(ctx, db, count))
                    else:
                        measured[system].append(await _peer_round(ctx, system, db, count))
            except Exception as exc:  # keep the other systems' figures and say what broke
                failed.add(system)
                outcome.notes.append(f"{system}: failed: {type(exc).__name__}: {exc}")
    for system, results in measured.items():
        if not results:
            continue
        enqueue_rates, process_rates, peaks = zip(*results, strict=True)
        outcome.add(f"{system} enqueue", statistics.mean(enqueue_rates), "jobs/s")
        outcome.add(f"{system} process", statistics.mean(process_rates), "jobs/s")
        outcome.add(f"{system} worker peak RSS", max(peaks), "MiB")
        outcome.notes.append(
            f"{system} per round: enqueue {', '.join(f'{r:,.0f}' for r in enqueue_rates)}; "
            f"process {', '.join(f'{r:,.0f}' for r in process_rates)} jobs/s"
        )
    if len(missing) == len(SYSTEMS):
        outcome.skipped = "neither procrastinate nor pgqueuer is installed (pip install -e '.[bench]')"
    outcome.notes.append(
        f"{count} jobs, concurrency {CONCURRENCY['postgresql']}, {PRODUCERS} enqueuing tasks, {rounds} round(s) "
        f"alternating {' / '.join(systems)} (mean); ANALYZE on the peers' databases (not on jobqueue's); "
        "uvloop in every process"
    )
    return outcome
