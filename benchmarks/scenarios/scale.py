"""Scale: the claim rate as the table grows in ways a claim must not notice.

* **Finished rows**: 1,000,000 finished jobs in the table versus 10,000 (20,000 queued in each).
* **Foreign backlog**: a claim of type A with 100,000 queued jobs of type B ahead of them in claim
  order (older, same priority) versus none; 20,000 queued jobs of type A in each. A claim that
  walked the global claim order would step over the whole backlog on every claim; one index
  range per type reads only type A.

The rows are bulk-inserted into a database migrated by the product's own runner, with plain
``sqlite3.executemany`` or psycopg ``COPY``: a fixture, kept here in the benchmarks, never a way
the product writes. Claims then go through ``JobQueueService``: single claims, then batches of
64 until the queue of type A is dry (or a time limit). No ANALYZE on either backend.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from benchmarks.common import Context, Outcome, migrated
from benchmarks.databases import Database
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

QUEUED = 20_000
FOREIGN = 100_000
SINGLE_CLAIMS = 2_000
BATCH = 64
#: Longest time spent on the single claims, and on the batches, of one table.
MEASURE_SECONDS = 10.0
#: The type claimed, and the type of the backlog it must not notice.
CLAIMED_TYPE = "noop"
FOREIGN_TYPE = "foreign"

#: Names of the two ratios (large / small table), which the targets read.
FINISHED_RATIO = "large / small finished"
TYPED_RATIO = f"typed, {FOREIGN:,} foreign / none"

_COLUMNS = (
    "id", "status", "progress", "job_type", "priority", "created_at", "updated_at", "started_at",
    "completed_at", "worker_id", "attempts", "max_attempts", "run_at", "claim_token",
)  # fmt: skip
_TIMES = {"created_at", "updated_at", "started_at", "completed_at", "run_at"}


@dataclass(frozen=True)
class Fill:
    """What the fixture puts in the table, oldest first: finished jobs, the foreign backlog,
    then the queued jobs of the claimed type."""

    finished: int = 0
    foreign: int = 0
    queued: int = QUEUED


def _rows(fill: Fill) -> Iterator[tuple[object, ...]]:
    """The fixture's rows in ``_COLUMNS`` order, times as epoch seconds."""
    now = time.time()
    base = now - 86_400
    for i in range(fill.finished):
        at = base + i * 1e-3
        yield (uuid.uuid4().hex, "completed", 100, CLAIMED_TYPE, 0, at, at + 1e-4, at, at + 1e-4, "bench", 1, 3,
               at, secrets.token_hex(16))  # fmt: skip
    # Older than every claimable job, so in global claim order the whole backlog comes first.
    for i in range(fill.foreign):
        at = now - 3_600 + i * 1e-6
        yield (uuid.uuid4().hex, "queued", 0, FOREIGN_TYPE, 0, at, at, None, None, None, 0, 3, now - 1, None)
    for i in range(fill.queued):
        at = now + i * 1e-6
        yield (uuid.uuid4().hex, "queued", 0, CLAIMED_TYPE, 0, at, at, None, None, None, 0, 3, now - 1, None)


def _fill_sqlite(db: Database, fill: Fill) -> None:
    assert db.path is not None
    conn = sqlite3.connect(db.path)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a fixture: nothing to keep if the machine dies
        sql = f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        rows = _rows(fill)
        while chunk := [row for _, row in zip(range(100_000), rows, strict=False)]:
            with conn:
                conn.executemany(sql, chunk)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    # Flush the fixture's writes to disk now: left dirty in the page cache, they would be paid
    # by the first fsync of the measured claims (a checkpoint), ~0.5 GB at 1M rows.
    with open(db.path, "rb+") as db_file:
        os.fsync(db_file.fileno())


def _fill_postgres(db: Database, fill: Fill) -> None:
    import psycopg

    times = [i for i, name in enumerate(_COLUMNS) if name in _TIMES]
    with psycopg.connect(db.url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY jobs ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for row in _rows(fill):
                values = list(row)
                for i in times:
                    if values[i] is not None:
                        values[i] = datetime.fromtimestamp(values[i], UTC)  # type: ignore[arg-type]
                copy.write_row(values)
        # Written out now, not by the measured claims' first commits (a checkpoint's worth).
        cur.execute("CHECKPOINT")


async def claim_rates(db: Database) -> tuple[float, float]:
    """Single claims/s of the claimed type (limit 1), then batched claims in jobs/s (limit 64).

    Each part stops after ``MEASURE_SECONDS`` if it has not finished: a claim that got slow with
    the table (the point of this scenario) must not stall the whole run.
    """
    async with JobQueueService.open(Settings(database_url=db.url, run_worker=False)) as service:
        started = time.perf_counter()
        deadline = started + MEASURE_SECONDS
        singles = 0
        while singles < SINGLE_CLAIMS and time.perf_counter() < deadline:
            claimed = await service.claim_jobs(worker_id="bench", job_types=[CLAIMED_TYPE], limit=1)
            assert claimed, "the queue ran dry"
            singles += 1
        single = singles / (time.perf_counter() - started)
        started = time.perf_counter()
        deadline = started + MEASURE_SECONDS
        total = 0
        while time.perf_counter() < deadline and (
            claimed := await service.claim_jobs(worker_id="bench", job_types=[CLAIMED_TYPE], limit=BATCH)
        ):
            assert all(c.job.job_type == CLAIMED_TYPE for c in claimed), "claimed a job of another type"
            total += len(claimed)
        batched = total / (time.perf_counter() - started)
    return single, batched


async def measure(ctx: Context, label: str, fill: Fill, outcome: Outcome) -> tuple[float, float]:
    with ctx.databases.create(f"scale-{label}") as db:
        await migrated(db)
        started = time.perf_counter()
        (_fill_sqlite if db.backend == "sqlite" else _fill_postgres)(db, fill)
        outcome.notes.append(f"fixture {label}: {fill} inserted in {time.perf_counter() - started:.1f}s")
        return await claim_rates(db)


def _compare(outcome: Outcome, cases: dict[str, tuple[float, float]], name: str) -> None:
    small, large = cases.values()
    for label, (single, batched) in cases.items():
        outcome.add(f"claim x1 with {label}", single, "claims/s")
        outcome.add(f"claim x1 with {label} (per claim)", 1000 / single, "ms")
        outcome.add(f"claim x{BATCH} with {label}", batched, "jobs/s")
    outcome.add(f"claim x1 {name}", large[0] / small[0], "ratio")
    outcome.add(f"claim x{BATCH} {name}", large[1] / small[1], "ratio")


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("scale")
    small, large = 10_000, ctx.scale(1_000_000, 100_000)
    finished = {
        f"{n:,} finished": await measure(ctx, f"finished-{n}", Fill(finished=n), outcome) for n in (small, large)
    }
    _compare(outcome, finished, FINISHED_RATIO)
    # The backlog in --quick too: it is what the case is about, and cheap to insert.
    typed = {
        "no foreign backlog": await measure(ctx, "typed-alone", Fill(), outcome),
        f"{FOREIGN:,} foreign queued": await measure(ctx, "typed-foreign", Fill(foreign=FOREIGN), outcome),
    }
    _compare(outcome, typed, TYPED_RATIO)
    outcome.notes.append(
        f"{QUEUED} queued jobs of the claimed type in each table; {SINGLE_CLAIMS} single claims then batches "
        f"of {BATCH} until dry (each for at most {MEASURE_SECONDS:g}s); the foreign backlog is older (first in "
        "global claim order)"
    )
    return outcome
