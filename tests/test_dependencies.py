"""Job dependencies (``depends_on``), on every backend: a job waits ``blocked`` until the jobs it
names finished, then runs; when one of them fails or is cancelled it is cancelled, naming it
(and so are its own dependents), or runs anyway under ``on_dependency_failure: "run"``. Every path
that finishes a job settles its dependents, in the same transaction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from jobqueue.errors import InvalidTransition, ValidationFailed
from jobqueue.models import EventKind, JobStatus
from jobqueue.service import JobQueueService
from jobqueue.worker import JobContext, Registry
from tests.conftest import assert_error, create, drain, make_settings
from tests.handlers import read_ledger
from tests.helpers import wait_until
from tests.test_worker_processes import Workers


async def status_of(service: JobQueueService, job_id: str) -> JobStatus:
    return (await service.require_job(job_id)).status


async def test_chain_and_fan_in_run_in_dependency_order(service: JobQueueService) -> None:
    registry = Registry()
    finished: list[str] = []

    @registry.handler("step")
    async def step(ctx: JobContext) -> None:
        await asyncio.sleep(0.01)
        finished.append(ctx.job.id)

    a = await service.enqueue_job("step")
    b = await service.enqueue_job("step", depends_on=[a])
    c = await service.enqueue_job("step", depends_on=[b])
    d = await service.enqueue_job("step", depends_on=[a, b, c])
    assert [await status_of(service, j) for j in (a, b, c, d)] == [
        JobStatus.QUEUED, JobStatus.BLOCKED, JobStatus.BLOCKED, JobStatus.BLOCKED,
    ]  # fmt: skip
    stats = await service.get_stats()
    assert stats.by_status["blocked"] == 3
    assert stats.ready == 1  # blocked jobs are not waiting in the queue

    pool = await drain(service, registry, concurrency=4)

    assert pool.processed == 4
    assert finished == [a, b, c, d]
    for job_id in (a, b, c, d):
        assert await status_of(service, job_id) is JobStatus.COMPLETED
    job_d = await service.require_job(d)
    assert job_d.depends_on == [a, b, c]
    assert job_d.on_dependency_failure == "cancel"
    # Unblocking is a status event to queued, written with the dependency's completion.
    kinds = [(e.kind, e.status) for e in await service.job_events(b)]
    assert kinds[:2] == [(EventKind.CREATED, JobStatus.BLOCKED), (EventKind.STATUS, JobStatus.QUEUED)]


async def test_blocked_jobs_are_never_claimed(service: JobQueueService) -> None:
    a = await service.enqueue_job("held")
    blocked = [await service.enqueue_job("held", priority=100, depends_on=[a]) for _ in range(5)]
    claimed = await service.claim_jobs(worker_id="w", limit=10)
    assert [c.job.id for c in claimed] == [a]
    assert await service.claim_jobs(worker_id="w", job_types=["held"], limit=10) == []
    assert await service.claim_jobs(worker_id="w", job_types=["held", "other"], limit=10) == []
    for job_id in blocked:
        assert await status_of(service, job_id) is JobStatus.BLOCKED
    await service.complete_job(a, claimed[0].claim_token)
    again = await service.claim_jobs(worker_id="w", limit=10)
    assert sorted(c.job.id for c in again) == sorted(blocked)


async def test_failure_cancels_dependents_naming_it_and_cascades(service: JobQueueService) -> None:
    registry = Registry()

    @registry.handler("broken")
    async def broken(ctx: JobContext) -> None:
        raise RuntimeError("boom")

    registry.add("fine", lambda ctx: asyncio.sleep(0))
    a = await service.enqueue_job("broken", max_attempts=1)
    b = await service.enqueue_job("fine", depends_on=[a])
    c = await service.enqueue_job("fine", depends_on=[b])
    runs = await service.enqueue_job("fine", depends_on=[a], on_dependency_failure="run")

    await drain(service, registry)

    assert await status_of(service, a) is JobStatus.FAILED
    job_b, job_c = await service.require_job(b), await service.require_job(c)
    assert (job_b.status, job_b.message, job_b.error) == (
        JobStatus.CANCELLED, f"dependency {a} failed", f"dependency {a} failed",
    )  # fmt: skip
    assert (job_c.status, job_c.message) == (JobStatus.CANCELLED, f"dependency {b} was cancelled")
    assert job_b.started_at is None and job_c.started_at is None  # never ran
    assert await status_of(service, runs) is JobStatus.COMPLETED
    assert [e.kind for e in await service.job_events(c)] == [EventKind.CREATED, EventKind.CANCELLED]

    # A retry of the failed dependency does not bring its cancelled dependents back.
    await service.retry_job(a)
    assert await status_of(service, b) is JobStatus.CANCELLED


async def test_run_policy_waits_for_every_dependency_to_finish(service: JobQueueService) -> None:
    a = await service.enqueue_job("step")
    b = await service.enqueue_job("step")
    d = await service.enqueue_job("step", depends_on=[a, b], on_dependency_failure="run")
    [claim_a] = await service.claim_jobs(worker_id="w", job_types=["step"], limit=1)
    await service.fail_job(a, claim_a.claim_token, "bad", retry=False)
    assert await status_of(service, d) is JobStatus.BLOCKED  # b has not finished yet
    await service.cancel_job(b)  # a waiting dependency cancelled: finished too
    assert await status_of(service, d) is JobStatus.QUEUED


async def test_every_path_that_finishes_a_job_settles_its_dependents(database_url: str) -> None:
    settings = make_settings(database_url, lease_seconds=0.3, retry_base_delay=0.05)
    async with JobQueueService.open(settings) as service:
        # Cancel of a waiting dependency.
        waiting = await service.enqueue_job("t")
        after_waiting = await service.enqueue_job("t", depends_on=[waiting])
        await service.cancel_job(waiting)
        assert (await service.require_job(after_waiting)).message == f"dependency {waiting} was cancelled"

        # Cancel of a blocked job cascades to its own dependents.
        root = await service.enqueue_job("t")
        middle = await service.enqueue_job("t", depends_on=[root])
        leaf = await service.enqueue_job("t", depends_on=[middle])
        await service.cancel_job(middle)
        assert await status_of(service, leaf) is JobStatus.CANCELLED
        assert await status_of(service, root) is JobStatus.QUEUED

        # An operator's change to a terminal status (PUT), completed and failed.
        done = await service.enqueue_job("t")
        after_done = await service.enqueue_job("t", depends_on=[done])
        await service.update_job(done, status=JobStatus.COMPLETED)
        assert await status_of(service, after_done) is JobStatus.QUEUED
        failed = await service.enqueue_job("t")
        after_failed = await service.enqueue_job("t", depends_on=[failed])
        await service.update_job(failed, status=JobStatus.FAILED, error="by hand")
        assert await status_of(service, after_failed) is JobStatus.CANCELLED

        # The holder acknowledging a requested cancel.
        for job_id in (root, middle, leaf, after_done, after_failed):
            if await status_of(service, job_id) is JobStatus.QUEUED:
                await service.cancel_job(job_id)
        held = await service.enqueue_job("held")
        after_held = await service.enqueue_job("held", depends_on=[held])
        [claim] = await service.claim_jobs(worker_id="w", job_types=["held"], limit=1)
        await service.cancel_job(held)
        assert await status_of(service, after_held) is JobStatus.BLOCKED  # still running
        await service.acknowledge_cancel(held, claim.claim_token)
        assert await status_of(service, after_held) is JobStatus.CANCELLED

        # The reaper failing a job whose lease lapsed on its last attempt.
        lost = await service.enqueue_job("lost", max_attempts=1)
        after_lost = await service.enqueue_job("lost", depends_on=[lost])
        await service.claim_jobs(worker_id="gone", job_types=["lost"], limit=1)

        async def reaped() -> bool:
            await service.reap_expired()
            return await status_of(service, lost) is JobStatus.FAILED

        await wait_until(reaped, "the reaper failing the lost job")
        job = await service.require_job(after_lost)
        assert (job.status, job.message) == (JobStatus.CANCELLED, f"dependency {lost} failed")


async def test_dependencies_already_finished_at_insert(service: JobQueueService) -> None:
    done = await service.enqueue_job("t")
    await service.update_job(done, status=JobStatus.COMPLETED)
    failed = await service.enqueue_job("t")
    await service.update_job(failed, status=JobStatus.FAILED)

    assert await status_of(service, await service.enqueue_job("t", depends_on=[done])) is JobStatus.QUEUED
    cancelled = await service.require_job(await service.enqueue_job("t", depends_on=[done, failed]))
    assert (cancelled.status, cancelled.message) == (JobStatus.CANCELLED, f"dependency {failed} failed")
    assert [e.kind for e in await service.job_events(cancelled.id)] == [EventKind.CREATED, EventKind.CANCELLED]
    run = await service.enqueue_job("t", depends_on=[failed], on_dependency_failure="run")
    assert await status_of(service, run) is JobStatus.QUEUED


async def test_invalid_dependencies_are_refused(service: JobQueueService) -> None:
    a = await service.enqueue_job("t")
    with pytest.raises(ValidationFailed, match="unknown jobs: nope-1, nope-2"):
        await service.enqueue_job("t", depends_on=[a, "nope-1", "nope-2"])
    with pytest.raises(ValidationFailed, match="needs depends_on"):
        await service.enqueue_job("t", on_dependency_failure="run")
    with pytest.raises(ValidationFailed, match="cancel or run"):
        await service.enqueue_job("t", depends_on=[a], on_dependency_failure="ignore")
    with pytest.raises(InvalidTransition, match="cannot be made blocked"):
        await service.update_job(a, status=JobStatus.BLOCKED)
    assert not (await service.require_job(a)).depends_on  # nothing was written for the refusals


async def test_http_create_with_dependencies(client: httpx.AsyncClient) -> None:
    a = await create(client, "t")
    b = await create(client, "t", depends_on=[a["id"], a["id"]], on_dependency_failure="run")
    assert (b["status"], b["depends_on"], b["on_dependency_failure"]) == ("blocked", [a["id"]], "run")
    got = (await client.get(f"/api/jobs/{b['id']}")).json()
    assert got["depends_on"] == [a["id"]]
    listed = (await client.get("/api/jobs", params={"status": "blocked"})).json()
    assert [(j["id"], j["depends_on"]) for j in listed["items"]] == [(b["id"], [a["id"]])]

    error = assert_error(await client.post("/api/jobs", json={"job_type": "t", "depends_on": ["missing"]}), 422)
    assert error["field"] == "depends_on" and "missing" in error["detail"]
    assert_error(await client.post("/api/jobs", json={"job_type": "t", "depends_on": []}), 422, "depends_on")
    too_many = [a["id"]] * 101
    assert_error(await client.post("/api/jobs", json={"job_type": "t", "depends_on": too_many}), 422, "depends_on")
    policy = {"job_type": "t", "depends_on": [a["id"]], "on_dependency_failure": "maybe"}
    assert_error(await client.post("/api/jobs", json=policy), 422, "on_dependency_failure")

    cancelled = (await client.post(f"/api/jobs/{b['id']}/cancel")).json()
    assert cancelled["status"] == "cancelled"  # a blocked job is cancelled at once


async def test_fan_in_across_worker_processes(service: JobQueueService, tmp_path: Path) -> None:
    """Two worker processes complete the dependencies of a fan-in at the same time: the
    dependent joins the queue exactly once, only after all of them (never stuck blocked)."""
    ledger = tmp_path / "ledger.txt"
    data = {"ledger": str(ledger), "seconds": 0.05}
    rounds = []
    for _ in range(10):
        roots = [await service.enqueue_job("ledger", data) for _ in range(4)]
        middle = await service.enqueue_job("ledger", data, depends_on=roots)
        tail = await service.enqueue_job("ledger", data, depends_on=[middle, roots[0]])
        rounds.append((roots, middle, tail))
    workers = Workers(tmp_path, service.settings)
    try:
        procs = [workers.start(concurrency=8, burst=True) for _ in range(2)]
        for proc in procs:
            assert await workers.wait_exit(proc) == 0, workers.log(proc)
    finally:
        workers.cleanup()
    order = [job_id for event, job_id, _ in read_ledger(ledger) if event == "done"]
    assert len(order) == len(set(order)) == 60
    for roots, middle, tail in rounds:
        assert all(order.index(root) < order.index(middle) for root in roots)
        assert order.index(middle) < order.index(tail)
        assert await status_of(service, tail) is JobStatus.COMPLETED
