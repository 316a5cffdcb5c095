"""What only PostgreSQL has to prove: events in commit order with concurrent writers, claim plans
that hold on a fresh unanalysed table, the commit signal, and running behind PgBouncer in
transaction mode. Everything else runs on both backends in the rest of the suite."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import psycopg
import pytest

import jobqueue.events as events_module
from jobqueue.models import JobEvent
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings
from jobqueue.storage.postgres.connection import QUERIES, Transaction

from .conftest import IN_CI, free_port, postgres_database, running_server


@pytest.fixture
def backend() -> str:
    return "postgresql"


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[JobQueueService]:
    async with JobQueueService.open(settings) as service:
        yield service


def _event_values(row: dict[str, Any], message: str) -> list[Any]:
    """A job_events row for ``row``'s change, as the store records it (id filled in at insert)."""
    return [0, row["id"], row["event_seq"], row["job_type"], "progress", row["status"], row["progress"], message, None, row["updated_at"]]


async def test_a_transaction_started_first_but_committed_last_gets_the_higher_event_id(
    settings: Settings,
) -> None:
    """Event ids follow commit order: a reader that delivered id N never sees a lower id later.

    Transaction A changes job 1 first and stays open; transaction B (another process) changes
    job 2 and commits; a poller delivers B's event; then A commits. With ids drawn when a change
    happens, A would hold the lower id and the poller, already past it, would never deliver it.
    """
    async with (
        JobQueueService.open(settings) as first,
        JobQueueService.open(settings) as second,
        JobQueueService.open(settings) as observer,
    ):
        job_1 = await first.enqueue_job("ordered")
        job_2 = await second.enqueue_job("ordered")
        await observer.events.catch_up()
        start = await observer.last_event_id()
        changed, release = asyncio.Event(), asyncio.Event()

        async def slow_change(tx: Transaction) -> None:
            row = await tx.fetch_one(
                "UPDATE jobs SET event_seq = event_seq + 1, message = 'A' WHERE id = %(id)s RETURNING *",
                {"id": job_1},
            )
            assert row is not None
            tx.events.append(_event_values(row, "A"))
            changed.set()
            await release.wait()  # the transaction stays open, its change made

        with observer.events.subscribe(lambda e: e.id > start) as subscription:
            slow = asyncio.create_task(first.store.db.write(slow_change))  # type: ignore[attr-defined]
            await changed.wait()
            await second.update_progress(job_2, 50, "B")  # commits while A is open
            await observer.events.catch_up()
            release.set()
            await slow
            await observer.events.catch_up()
            delivered: list[JobEvent] = []
            while (event := await subscription.get(timeout=0.5)) is not None:
                delivered.append(event)

        assert [(e.job_id, e.message) for e in delivered] == [(job_2, "B"), (job_1, "A")]
        assert delivered[0].id < delivered[1].id
        replay = await observer.events_after(start)
        assert [e.id for e in replay] == [e.id for e in delivered]


async def test_event_ids_are_reserved_one_transaction_at_a_time_until_commit(pg: JobQueueService, settings: Settings) -> None:
    """The event-id lock is held from the reservation to the commit: a second transaction waits."""
    job_id = await pg.enqueue_job("locked")
    row = (await pg.store.db.fetch_all("SELECT * FROM jobs WHERE id = %(id)s", {"id": job_id}))[0]  # type: ignore[attr-defined]
    def rows(seq: int) -> dict[str, str]:
        event = {"job_id": job_id, "seq": seq, "job_type": "locked", "kind": "progress", "status": "queued",
                 "progress": 0, "message": None, "data": None, "at": row["updated_at"]}  # fmt: skip
        return {"rows": msgspec.json.encode([event]).decode()}

    async with (
        await psycopg.AsyncConnection.connect(settings.database_url) as a,
        await psycopg.AsyncConnection.connect(settings.database_url) as b,
    ):
        cur_a = await a.execute(QUERIES["insert_events"], rows(100))
        (first_id,) = await cur_a.fetchone()  # type: ignore[misc]
        second = asyncio.create_task(b.execute(QUERIES["insert_events"], rows(101)))
        await asyncio.sleep(0.5)
        assert not second.done()  # waits for A's commit
        await a.commit()
        cur_b = await asyncio.wait_for(second, 10)
        (second_id,) = await cur_b.fetchone()  # type: ignore[misc]
        await b.commit()
    assert second_id == first_id + 1


async def test_claims_use_their_index_on_a_fresh_unanalysed_table(pg: JobQueueService, settings: Settings) -> None:
    """No ANALYZE has run: the plans must still walk the claim indexes in order, not read and
    sort every waiting job, also behind 100,000 finished jobs and 100,000 waiting of another type."""
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO jobs (id, job_type, status, created_at, updated_at, run_at, completed_at) "
            "SELECT 'done-' || n, 'a', 'completed', now() - interval '2 days', now(), "
            "now() - interval '2 days', now() - interval '1 day' FROM generate_series(1, 100000) AS n"
        )
        await conn.execute(
            "INSERT INTO jobs (id, job_type, created_at, updated_at, run_at) "
            "SELECT 'other-' || n, 'b', now() - interval '1 day', now(), now() - interval '1 day' "
            "FROM generate_series(1, 100000) AS n"
        )
        await conn.execute(
            "INSERT INTO jobs (id, job_type, created_at, updated_at, run_at) "
            "SELECT 'mine-' || n, 'a', now(), now(), now() FROM generate_series(1, 20000) AS n"
        )
        now = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(time.time() + 60))
        params: dict[str, Any] = {"worker_id": "w", "now": now, "lease_until": "infinity", "limit": 1}
        plans = {}
        for name, extra in (("claim_jobs", {}), ("claim_jobs_of_types", {"job_types": ["a", "c"]})):
            async with conn.transaction():  # as the store claims: claim_controls, then the claim
                await conn.execute(QUERIES["claim_controls"], {"job_types": None})
                cur = await conn.execute("EXPLAIN " + QUERIES[name], {**params, **extra})
                plans[name] = "\n".join(row[0] for row in await cur.fetchall())
    assert "Index Scan using jobs_claim on" in plans["claim_jobs"], plans["claim_jobs"]
    assert "Index Scan using jobs_claim_by_type on" in plans["claim_jobs_of_types"], plans["claim_jobs_of_types"]
    for plan in plans.values():
        assert "Seq Scan on jobs" not in plan and "Bitmap" not in plan, plan
    claimed = await pg.claim_jobs(worker_id="w", job_types=["a"], limit=3)
    assert [c.job.id for c in claimed] == ["mine-1", "mine-2", "mine-3"] or len(claimed) == 3


async def test_another_process_commit_wakes_the_hub_at_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Redis the commit signal (LISTEN/NOTIFY) delivers other processes' events: with
    the fallback poll pushed to a minute, the event still arrives in seconds."""
    monkeypatch.setattr(events_module, "FAST_POLL_INTERVAL", 60.0)
    async with JobQueueService.open(settings) as listener, JobQueueService.open(settings) as writer:
        assert listener.events.signals
        with listener.events.subscribe(lambda e: e.job_type == "signalled") as subscription:
            job_id = await writer.enqueue_job("signalled")
            event = await subscription.get(timeout=10)
    assert event is not None and event.job_id == job_id


# -- behind PgBouncer in transaction mode -------------------------------------------------------

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
)


@pytest.fixture
def pgbouncer(postgres_admin_url: str) -> Iterator[str]:
    """Debian's PgBouncer in transaction mode in front of the test server; yields its host:port."""
    if PGBOUNCER is None:
        reason = "pgbouncer is needed (apt-get install pgbouncer)"
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the PgBouncer tests")
        pytest.skip(reason)
    server = urlsplit(postgres_admin_url)
    folder = Path(tempfile.mkdtemp(prefix="jobqueue-pgbouncer-"))
    folder.chmod(0o755)  # it drops to the postgres user, which must read its own config
    port = free_port()
    config = folder / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={server.hostname} port={server.port or 5432} user={server.username or 'postgres'}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        "auth_type = any\npool_mode = transaction\n"
        "max_client_conn = 200\ndefault_pool_size = 10\n"
        f"unix_socket_dir =\nlogfile = {folder / 'pgbouncer.log'}\n"
    )
    config.chmod(0o644)
    log = folder / "pgbouncer.log"
    log.touch()
    log.chmod(0o666)
    command = [PGBOUNCER, str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "postgres"]  # PgBouncer refuses to run as root
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=1).close()
                break
            except psycopg.Error:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {log.read_text()!r}") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def test_enqueue_claim_progress_complete_and_stream_through_pgbouncer(
    pgbouncer: str, postgres_admin_url: str, tmp_path: Path
) -> None:
    """The whole cycle over HTTP, the server's every connection going through PgBouncer in
    transaction mode (no LISTEN, no prepared statements: DATABASE_POOLING=transaction)."""
    with postgres_database(postgres_admin_url) as direct_url:
        url = urlsplit(direct_url)._replace(netloc=f"postgres@{pgbouncer}").geturl()
        with running_server(tmp_path, url, DATABASE_POOLING="transaction", RUN_WORKER="false", POLL_INTERVAL="0.05") as base:
            with httpx.Client(base_url=base, timeout=30) as client:
                created = client.post("/api/jobs", json={"job_type": "bounced", "request_data": {"n": 1}})
                assert created.status_code == 201, created.text
                job_id = created.json()["id"]
                with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
                    claimed = client.post("/api/workers/claim", json={"worker_id": "w", "job_types": ["bounced"]})
                    assert claimed.status_code == 200, claimed.text
                    (held,) = claimed.json()["jobs"]
                    token = held["claim_token"]
                    progress = client.post(
                        f"/api/jobs/{job_id}/progress", json={"progress": 40, "message": "half", "claim_token": token}
                    )
                    assert progress.status_code == 200, progress.text
                    done = client.post(f"/api/jobs/{job_id}/complete", json={"claim_token": token, "result_data": {"ok": True}})
                    assert done.status_code == 200, done.text
                    kinds = [line.split(": ", 1)[1] for line in stream.iter_lines() if line.startswith("event: ")]
            assert kinds[0] == "snapshot" and kinds[-1] == "completed", kinds
            assert "progress" in kinds
            job = httpx.get(f"{base}/api/jobs/{job_id}").json()
        assert job["status"] == "completed" and job["result_data"] == {"ok": True}
        assert job["progress"] == 100


async def test_the_limited_claim_plan_walks_the_indexes(pg: JobQueueService, database_url: str) -> None:
    """PostgreSQL, no ANALYZE: the claim of a limited type counts its held jobs through
    jobs_held_by_type and walks its waiting jobs through jobs_claim_by_type, behind 20,000
    finished jobs of the type (the bitmap scan it would otherwise pick reads all of them)."""
    import psycopg

    await pg.set_limits("r", max_running=5, rate=(100, 60))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO jobs (id, job_type, status, created_at, updated_at, run_at, completed_at) "
            "SELECT 'done-' || n, 'r', 'completed', now(), now(), now(), now() FROM generate_series(1, 20000) AS n"
        )
        now = datetime.now(UTC)
        params = {
            "worker_id": "w", "now": now, "lease_until": now, "limit": 3, "job_types": ["r", "x"],
            "any_type": False, "excluded": ["r"], "keyed_ids": [],
        }  # fmt: skip
        async with conn.transaction():
            await conn.execute(QUERIES["claim_controls"], {"job_types": ["r", "x"]})
            cursor = await conn.execute("EXPLAIN " + QUERIES["claim_jobs_controlled"], params)
            plan = "\n".join(row[0] for row in await cursor.fetchall())
    assert "Index Only Scan using jobs_held_by_type on jobs" in plan, plan
    assert "Index Scan using jobs_claim_by_type on jobs" in plan, plan
    assert "Bitmap" not in plan and "Seq Scan on jobs" not in plan, plan
