"""Retention: finished jobs past their age go with their events, by status; the CLI and the
server's periodic task apply it, on every backend. On SQLite the file shrinks (incremental
vacuum) and the WAL stays bounded while streams are open."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

import jobqueue.storage.sqlite.connection as sqlite_connection
from jobqueue.models import JobStatus
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings
from tests.conftest import make_settings, sqlite_only, subprocess_env
from tests.event_handlers import sse_messages
from tests.helpers import move_every_job_back, set_completed_at, stored_events

DAY = 86_400.0


def _age(database_url: str, job_id: str, days: float) -> None:
    """Pretend the job finished ``days`` ago (the clock is the only thing the test fakes)."""
    set_completed_at(database_url, job_id, time.time() - days * DAY)


def _event_count(database_url: str, job_id: str) -> int:
    return sum(1 for row in stored_events(database_url) if row["job_id"] == job_id)


def _checkpointed_size(db_path: Path) -> int:
    """The size of the file once the WAL is copied back into it (where a shrink shows)."""
    with closing(sqlite3.connect(db_path)) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    return db_path.stat().st_size


async def _finished(service: JobQueueService, status: JobStatus) -> str:
    job_id = await service.enqueue_job("render", {"status": status.value})
    if status is JobStatus.CANCELLED:
        await service.cancel_job(job_id)
    else:
        await service.update_job(job_id, status=JobStatus.PROCESSING, progress=50, message="half")
        await service.update_job(job_id, status=status, error="broken" if status is JobStatus.FAILED else None)
    return job_id


async def test_prune_deletes_only_finished_jobs_past_retention_with_their_events(
    service: JobQueueService, settings: Settings
) -> None:
    db = settings.database_url
    old_completed = await _finished(service, JobStatus.COMPLETED)
    young_completed = await _finished(service, JobStatus.COMPLETED)
    old_failed = await _finished(service, JobStatus.FAILED)
    middle_failed = await _finished(service, JobStatus.FAILED)
    old_cancelled = await _finished(service, JobStatus.CANCELLED)
    waiting = await service.enqueue_job("render")
    running = await service.enqueue_job("render")
    await service.update_job(running, status=JobStatus.PROCESSING)
    _age(db, old_completed, 8)
    _age(db, young_completed, 6)
    _age(db, old_failed, 31)
    _age(db, middle_failed, 8)  # past the completed retention, not the failed one
    _age(db, old_cancelled, 31)
    move_every_job_back(db, 90 * DAY)  # old but unfinished jobs are never pruned
    kept_events = {j: _event_count(db, j) for j in (young_completed, middle_failed, waiting, running)}
    assert _event_count(db, old_completed) == 3

    deleted = await service.prune(completed_older_than=7 * DAY, failed_older_than=30 * DAY)

    assert deleted == 3
    for job_id in (old_completed, old_failed, old_cancelled):
        assert await service.get_job(job_id) is None
        assert _event_count(db, job_id) == 0  # the events went with the job (cascade)
        assert await service.job_events(job_id) == []
    for job_id, count in kept_events.items():
        assert await service.get_job(job_id) is not None
        assert _event_count(db, job_id) == count
    assert await service.prune(completed_older_than=7 * DAY, failed_older_than=30 * DAY) == 0


async def test_prune_runs_in_batches(service: JobQueueService, settings: Settings) -> None:
    jobs = [await _finished(service, JobStatus.CANCELLED) for _ in range(25)]
    for job_id in jobs:
        _age(settings.database_url, job_id, 2)
    assert await service.prune(completed_older_than=DAY, failed_older_than=DAY, batch=10) == 25
    assert await service.list_jobs() == ([], 0)


async def test_global_event_ids_are_not_reused_after_pruning(service: JobQueueService, settings: Settings) -> None:
    """A dashboard resuming the all-jobs stream must never be handed an old id again."""
    job_id = await _finished(service, JobStatus.CANCELLED)
    last = (await service.events_after(0))[-1].id
    _age(settings.database_url, job_id, 2)
    assert await service.prune(completed_older_than=DAY, failed_older_than=DAY) == 1
    new_id = await service.enqueue_job("render")
    assert [e.id for e in await service.job_events(new_id)] == [last + 1]


def _prune_cli(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue", "prune", "--database-url", database_url, *args],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_prune_command(database_url: str) -> None:
    settings = make_settings(database_url)
    async with JobQueueService.open(settings) as service:
        completed = await _finished(service, JobStatus.COMPLETED)
        failed = await _finished(service, JobStatus.FAILED)
    _age(database_url, completed, 3)
    _age(database_url, failed, 3)

    # The defaults (7 and 30 days) keep both.
    kept = _prune_cli(database_url)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.splitlines() == [
        "pruned 0 finished job(s): completed older than 7 days, failed or cancelled older than 30 days"
    ]
    # A flag, and the environment for the other setting.
    done = _prune_cli(database_url, "--completed-days", "2", RETENTION_FAILED_DAYS="2.5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "pruned 2 finished job(s): completed older than 2 days, failed or cancelled older than 2.5 days"
    ]
    bad = _prune_cli(database_url, "--failed-days", "soon")
    assert bad.returncode == 2 and "must be a number" in bad.stderr and "Traceback" not in bad.stderr
    # The error names the flag as typed; the setting's own flag is accepted as well.
    assert bad.stderr.startswith("jobqueue: error: --failed-days must be a number")
    typed = _prune_cli(database_url, "--retention-failed-days", "soon")
    assert typed.stderr.startswith("jobqueue: error: --retention-failed-days must be a number")
    assert _prune_cli(database_url, "--retention-failed-days", "1").returncode == 0

    async with JobQueueService.open(settings) as service:
        assert await service.get_job(completed) is None and await service.get_job(failed) is None


async def test_the_server_prunes_periodically(database_url: str, app_client_factory: Callable[..., Any]) -> None:
    settings = make_settings(database_url, retention_completed_days=0.0, retention_failed_days=0.0, prune_interval=0.1)
    async with app_client_factory(settings) as client:
        job = (await client.post("/api/jobs", json={"job_type": "render"})).json()
        assert (await client.post(f"/api/jobs/{job['id']}/cancel")).status_code == 200
        deadline = time.monotonic() + 20
        while (await client.get(f"/api/jobs/{job['id']}")).status_code != 404:
            assert time.monotonic() < deadline, "the periodic retention run never deleted the job"
            await asyncio.sleep(0.05)
        unfinished = (await client.post("/api/jobs", json={"job_type": "render"})).json()
        await asyncio.sleep(0.5)  # several retention runs
        assert (await client.get(f"/api/jobs/{unfinished['id']}")).status_code == 200


@sqlite_only
async def test_fresh_file_uses_incremental_auto_vacuum(settings: Settings, service: JobQueueService) -> None:
    with closing(sqlite3.connect(settings.database_path)) as conn, conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        # Streams must not let the WAL grow forever: it is truncated back after checkpoints.
    rows = await service.store.db.fetch_all("PRAGMA journal_size_limit")
    assert next(iter(rows))[0] > 0


@sqlite_only
async def test_pruning_many_jobs_shrinks_the_file(database_url: str) -> None:
    settings = make_settings(database_url)
    db = settings.database_path
    payload = {"blob": "x" * 2000}
    async with JobQueueService.open(settings) as service:
        job_ids = []
        for _ in range(6):
            job_ids += await asyncio.gather(*(service.enqueue_job("bulk", payload) for _ in range(500)))
        await asyncio.gather(*(service.cancel_job(job_id) for job_id in job_ids))
        keep = await service.enqueue_job("bulk", payload)
    full = _checkpointed_size(db)
    assert full > 6 * 1024 * 1024
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE jobs SET completed_at = completed_at - ? WHERE status = 'cancelled'", (31 * DAY,))

    async with JobQueueService.open(settings) as service:
        assert await service.prune(completed_older_than=7 * DAY, failed_older_than=30 * DAY) == len(job_ids)
        assert await service.get_job(keep) is not None
    pruned = _checkpointed_size(db)
    assert pruned < full / 4, (full, pruned)
    with closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@sqlite_only
async def test_wal_stays_bounded_while_a_stream_is_open_during_heavy_writes(
    live_server: Callable[..., str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server process streams every event to a client while this process writes far more
    than the bound: checkpoints still reset the WAL because no reader holds a snapshot long.

    Under a steady stream of writes the background checkpointer alone never sees the WAL
    fully copied, so the writer's own checkpoint (the backstop) is what bounds it; the
    backstop is lowered here from 10,000 pages to 2,000 so the test writes 32 MiB, not 100."""
    monkeypatch.setattr(sqlite_connection, "WRITER_AUTOCHECKPOINT_PAGES", 2_000)
    url = live_server(RUN_WORKER="false", SSE_KEEPALIVE="0.2")
    wal = tmp_path / "jobs.db-wal"
    bound = 16 * 1024 * 1024
    largest = 0
    received = 0
    # Big payloads: many pages per row, so the volume is reached with few jobs and events.
    payload = {"blob": "y" * 16_000}

    async def watch_wal() -> None:
        nonlocal largest
        while True:
            if wal.exists():
                largest = max(largest, wal.stat().st_size)
            await asyncio.sleep(0.01)

    async def read_stream(response: httpx.Response) -> None:
        nonlocal received
        async for message in sse_messages(response):
            if message.comment is None:
                received += 1

    settings = make_settings(database_url)
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as http,
        http.stream("GET", f"{url}/api/events?job_type=heavy") as response,
        JobQueueService.open(settings) as service,
    ):
        reader = asyncio.create_task(read_stream(response))
        watcher = asyncio.create_task(watch_wal())
        try:
            written = 0
            while written < 2 * bound:  # payload bytes alone, pages and indexes add more
                await asyncio.gather(*(service.enqueue_job("heavy", payload) for _ in range(100)))
                written += 100 * len(payload["blob"])
            total = written // len(payload["blob"])
            deadline = time.monotonic() + 60
            while received < total:
                assert time.monotonic() < deadline, f"the stream got {received} of {total} events"
                await asyncio.sleep(0.1)
        finally:
            reader.cancel()
            watcher.cancel()
            await asyncio.gather(reader, watcher, return_exceptions=True)
    assert received == total
    assert 0 < largest < bound, largest
    assert os.path.getsize(tmp_path / "jobs.db") > bound  # checkpoints did copy the data over
