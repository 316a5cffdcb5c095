"""The atomic claim: order, exactly-once under concurrency (tasks and processes), filters, delays."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobqueue.models import JobStatus
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

from .conftest import subprocess_env

JOBS = 2000


async def enqueue_many(service: JobQueueService, count: int, job_type: str = "bulk") -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 200):
        ids += await asyncio.gather(
            *(service.enqueue_job(job_type, {"n": n}) for n in range(start, min(start + 200, count)))
        )
    return ids


async def claim_all_one_by_one(service: JobQueueService) -> list[str]:
    order: list[str] = []
    while (claimed := await service.get_next_job(worker_id="w")) is not None:
        order.append(claimed.job.id)
    return order


async def test_claim_marks_the_job_as_held(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("thumbnail", {"w": 1})
    before = datetime.now(UTC)
    claimed = await service.get_next_job(worker_id="worker-7")
    assert claimed is not None
    job = claimed.job
    assert job.id == job_id
    assert job.status is JobStatus.PROCESSING
    assert job.worker_id == "worker-7"
    assert job.started_at is not None and job.started_at >= before - timedelta(seconds=1)
    assert job.attempts == 1
    assert claimed.claim_token
    assert job.lease_expires_at is not None and job.lease_expires_at > job.started_at
    stored = await service.get_job(job_id)
    assert stored is not None and stored.status is JobStatus.PROCESSING and stored.worker_id == "worker-7"
    assert await service.get_next_job(worker_id="worker-8") is None


async def test_empty_queue_gives_none(service: JobQueueService) -> None:
    assert await service.get_next_job() is None
    assert await service.claim_jobs(worker_id="w", limit=10) == []


async def test_highest_priority_first_then_oldest(service: JobQueueService) -> None:
    priorities = [0, 5, -1, 5, 10, 0, -1, 10, 3]
    ids = [await service.enqueue_job("t", {"i": i}, priority=p) for i, p in enumerate(priorities)]
    expected = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-priorities[i], i))]
    assert await claim_all_one_by_one(service) == expected


async def test_batch_claim_respects_the_order(service: JobQueueService) -> None:
    priorities = [1, 2, 3, 1, 2, 3, 0]
    ids = [await service.enqueue_job("t", priority=p) for p in priorities]
    expected = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-priorities[i], i))]
    first = await service.claim_jobs(worker_id="w", limit=4)
    rest = await service.claim_jobs(worker_id="w", limit=10)
    assert [c.job.id for c in first] == expected[:4]
    assert [c.job.id for c in rest] == expected[4:]


async def test_pending_jobs_are_claimable_and_others_are_not(service: JobQueueService) -> None:
    waiting = await service.enqueue_job("t")
    pending = await service.enqueue_job("t")
    await service.update_job(pending, status="pending")
    done = await service.enqueue_job("t")
    await service.update_job(done, status="completed")
    running = await service.enqueue_job("t")
    await service.update_job(running, status="rendering")
    assert set(await claim_all_one_by_one(service)) == {waiting, pending}


async def test_twenty_tasks_claim_every_job_exactly_once(service: JobQueueService) -> None:
    ids = await enqueue_many(service, JOBS)

    async def claimer(n: int) -> list[str]:
        mine: list[str] = []
        while True:
            if n % 4 == 0:  # a few batch claimers among the single ones
                batch = await service.claim_jobs(worker_id=f"w{n}", limit=7)
                if not batch:
                    return mine
                mine += [c.job.id for c in batch]
            else:
                claimed = await service.get_next_job(worker_id=f"w{n}")
                if claimed is None:
                    return mine
                mine.append(claimed.job.id)

    results = await asyncio.gather(*(claimer(n) for n in range(20)))
    claimed = [job_id for result in results for job_id in result]
    duplicates = [job_id for job_id, count in Counter(claimed).items() if count > 1]
    assert duplicates == []
    assert sorted(claimed) == sorted(ids)
    jobs, total = await service.list_jobs(status="processing", limit=1)
    assert total == JOBS
    _, waiting = await service.list_jobs(status=["queued", "pending"], limit=1)
    assert waiting == 0
    assert jobs[0].attempts == 1


_CLAIM_LOOP = """
import asyncio, sys, time
from pathlib import Path

import pytest
from jobqueue.service import JobQueueService
from jobqueue.settings import load_settings

async def main(url: str, out: str, go: str, name: str) -> None:
    settings = load_settings({"DATABASE_URL": url, "RUN_WORKER": "false"})
    async with JobQueueService.open(settings) as service:
        while not Path(go).exists():  # start together, so they really compete
            await asyncio.sleep(0.005)
        with open(out, "w") as ids:
            while (claimed := await service.get_next_job(worker_id=name)) is not None:
                ids.write(claimed.job.id + "\\n")

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.slow
async def test_four_processes_claim_every_job_exactly_once(
    service: JobQueueService, settings: Settings, tmp_path: Path
) -> None:
    ids = await enqueue_many(service, JOBS)
    go = tmp_path / "go"
    outputs = [tmp_path / f"claimed-{n}.txt" for n in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIM_LOOP, settings.database_url, str(out), str(go), f"proc-{n}"],
            env=subprocess_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, out in enumerate(outputs)
    ]
    await asyncio.sleep(1.0)  # let the interpreters start and open the database
    go.touch()
    deadline = time.monotonic() + 120
    for proc in procs:
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
        assert proc.returncode == 0, err

    per_process = [out.read_text().split() for out in outputs]
    claimed = [job_id for part in per_process for job_id in part]
    duplicates = [job_id for job_id, count in Counter(claimed).items() if count > 1]
    assert duplicates == []
    assert sorted(claimed) == sorted(ids)
    # Each claim was recorded by the process that made it, and only once.
    for n, part in enumerate(per_process):
        for job_id in part[:50]:
            job = await service.get_job(job_id)
            assert job is not None and job.worker_id == f"proc-{n}" and job.attempts == 1
    _, total = await service.list_jobs(status="processing", limit=1)
    assert total == JOBS


async def test_job_types_filter(service: JobQueueService) -> None:
    a = await service.enqueue_job("a")
    b = await service.enqueue_job("b", priority=100)
    c = await service.enqueue_job("c")
    claimed = await service.claim_jobs(worker_id="w", job_types=["a", "c"], limit=10)
    assert {x.job.id for x in claimed} == {a, c}
    assert await service.get_next_job(job_types=["a", "c"]) is None
    assert await service.get_next_job(job_types=["zzz"]) is None
    only_b = await service.get_next_job(job_types=["b"])
    assert only_b is not None and only_b.job.id == b


async def test_delayed_jobs_wait_until_due(service: JobQueueService) -> None:
    later = await service.enqueue_job("t", delay=3600)
    scheduled = await service.enqueue_job("t", run_at=datetime.now(UTC) + timedelta(hours=1))
    overdue = await service.enqueue_job("t", run_at=datetime.now(UTC) - timedelta(minutes=1))
    soon = await service.enqueue_job("t", delay=1.0)
    now = await service.enqueue_job("t")
    first = await service.claim_jobs(worker_id="w", limit=10)
    assert {c.job.id for c in first} == {overdue, now}

    deadline = time.monotonic() + 30
    found = None
    while found is None and time.monotonic() < deadline:
        found = await service.get_next_job()
        if found is None:
            await asyncio.sleep(0.05)
    assert found is not None and found.job.id == soon
    assert await service.get_next_job() is None
    for job_id in (later, scheduled):
        job = await service.get_job(job_id)
        assert job is not None and job.status is JobStatus.QUEUED


async def test_naive_run_at_is_utc(service: JobQueueService) -> None:
    naive_future = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None)
    await service.enqueue_job("t", run_at=naive_future)
    assert await service.get_next_job() is None
