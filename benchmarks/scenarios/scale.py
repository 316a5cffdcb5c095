"""Scale: the claim rate with 1,000,000 finished jobs in the table versus 10,000.

The finished rows (and the queued ones to claim) are bulk-inserted with plain sqlite3
``executemany`` into a database migrated by the product's own runner: a fixture, kept here in
the benchmarks, never a way the product writes. Claims then go through ``JobQueueService``.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
import uuid
from pathlib import Path

from benchmarks.common import Context, Outcome, database_url, migrated_database
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

QUEUED = 20_000
SINGLE_CLAIMS = 2_000
BATCH = 64

_COLUMNS = (
    "id, status, progress, job_type, priority, created_at, updated_at, started_at, completed_at, "
    "worker_id, attempts, max_attempts, run_at, claim_token"
)


def bulk_insert(path: Path, finished: int, queued: int) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a fixture: nothing to keep if the machine dies
        sql = f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, 'noop', 0, ?, ?, ?, ?, ?, ?, 3, ?, ?)"
        base = time.time() - 86_400
        chunk = 100_000
        for start in range(0, finished, chunk):
            rows = [
                (uuid.uuid4().hex, "completed", 100, base + i * 1e-3, base + i * 1e-3, base + i * 1e-3,
                 base + i * 1e-3 + 1e-4, "bench", 1, base + i * 1e-3, secrets.token_hex(16))
                for i in range(start, min(finished, start + chunk))
            ]
            with conn:
                conn.executemany(sql, rows)
        now = time.time()
        rows = [
            (uuid.uuid4().hex, "queued", 0, now + i * 1e-6, now + i * 1e-6, None, None, None, 0, now - 1, None)
            for i in range(queued)
        ]
        with conn:
            conn.executemany(sql, rows)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    # Flush the fixture's writes to disk now: left dirty in the page cache, they would be paid
    # by the first fsync of the measured claims (a checkpoint), ~0.5 GB at 1M rows.
    with open(path, "rb+") as db_file:
        os.fsync(db_file.fileno())


async def claim_rates(path: Path) -> tuple[float, float]:
    """Single claims/s (limit 1), then batched claims in jobs/s (limit 64)."""
    async with JobQueueService.open(Settings(database_url=database_url(path), run_worker=False)) as service:
        started = time.perf_counter()
        for _ in range(SINGLE_CLAIMS):
            claimed = await service.claim_jobs(worker_id="bench", job_types=["noop"], limit=1)
            assert claimed, "the queue ran dry"
        single = SINGLE_CLAIMS / (time.perf_counter() - started)
        started = time.perf_counter()
        total = 0
        while claimed := await service.claim_jobs(worker_id="bench", job_types=["noop"], limit=BATCH):
            total += len(claimed)
        batched = total / (time.perf_counter() - started)
    return single, batched


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("scale")
    small, large = 10_000, ctx.scale(1_000_000, 100_000)
    rates: dict[int, tuple[float, float]] = {}
    for finished in (small, large):
        path = ctx.workdir / f"scale-{finished}.db"
        await migrated_database(path)
        started = time.perf_counter()
        bulk_insert(path, finished, QUEUED)
        outcome.notes.append(f"fixture {finished} finished rows inserted in {time.perf_counter() - started:.1f}s")
        rates[finished] = await claim_rates(path)
        path.unlink()
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    for finished, (single, batched) in rates.items():
        outcome.add(f"claim x1 with {finished:,} finished", single, "claims/s")
        outcome.add(f"claim x{BATCH} with {finished:,} finished", batched, "jobs/s")
    outcome.add(f"claim x1 {large:,} / {small:,}", rates[large][0] / rates[small][0], "ratio")
    outcome.add(f"claim x{BATCH} {large:,} / {small:,}", rates[large][1] / rates[small][1], "ratio")
    outcome.notes.append(f"{QUEUED} queued jobs in each table; {SINGLE_CLAIMS} single claims then batches of {BATCH}")
    return outcome
