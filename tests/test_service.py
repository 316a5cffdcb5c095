"""The Python service API (the seed's names) used directly, without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobqueue.errors import IdempotencyConflict, InvalidTransition, JobNotFound, ValidationFailed
from jobqueue.models import Job, JobStatus
from jobqueue.service import MAX_PAGE_SIZE, JobQueueService


async def test_enqueue_and_get(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("thumbnail", {"w": 64}, priority=2)
    assert isinstance(job_id, str) and job_id
    job = await service.get_job(job_id)
    assert isinstance(job, Job)
    assert (job.job_type, job.request_data, job.priority, job.status) == ("thumbnail", {"w": 64}, 2, JobStatus.QUEUED)
    assert job.created_at.tzinfo is not None
    assert await service.get_job("missing") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"request_data": {"n": 1.5, "tags": ["a", "b"], "nested": {"k": None}}, "priority": -3},
        {"delay": 30, "max_attempts": 7, "timeout": 2.5},
        {"run_at": datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)},
    ],
)
async def test_a_created_job_is_what_reading_it_back_returns(service: JobQueueService, kwargs: dict) -> None:
    # Jobs without an idempotency key are built in Python, not read back from the insert:
    # every field must still match the stored row, and the first event must be in the table.
    created, is_new = await service.create_job("thumbnail", **kwargs)
    assert is_new
    stored = await service.get_job(created.id)
    assert stored == created
    events = await service.job_events(created.id)
    assert [(e.seq, e.kind.value, e.at) for e in events] == [(1, "created", created.created_at)]


@pytest.mark.parametrize("job_type", ["", "x" * 101])
async def test_enqueue_refuses_a_bad_job_type(service: JobQueueService, job_type: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        await service.enqueue_job(job_type)
    assert exc.value.field == "job_type"


async def test_enqueue_refuses_run_at_with_delay(service: JobQueueService) -> None:
    with pytest.raises(ValidationFailed):
        await service.enqueue_job("t", run_at=datetime.now(UTC), delay=5)


async def test_idempotency_key(service: JobQueueService) -> None:
    first = await service.enqueue_job("t", {"a": 1}, idempotency_key="k")
    assert await service.enqueue_job("t", {"a": 1}, idempotency_key="k") == first
    with pytest.raises(IdempotencyConflict):
        await service.enqueue_job("t", {"a": 2}, idempotency_key="k")


async def test_update_job_changes_only_what_is_given(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("t")
    job = await service.update_job(job_id, status="processing", message="go", worker_id="w1")
    assert job.status is JobStatus.PROCESSING and job.message == "go" and job.worker_id == "w1"
    assert job.started_at is not None
    job = await service.update_job(job_id, progress=60)
    assert (job.progress, job.message, job.worker_id) == (60, "go", "w1")
    job = await service.update_job(job_id, message=None)
    assert job.message is None
    job = await service.update_job(job_id, status=JobStatus.COMPLETED, result_data={"ok": 1})
    assert (job.status, job.progress, job.result_data) == (JobStatus.COMPLETED, 100, {"ok": 1})
    assert job.completed_at is not None


async def test_update_job_errors(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("t")
    with pytest.raises(ValidationFailed) as exc:
        await service.update_job(job_id, status="sleeping")
    assert exc.value.field == "status"
    with pytest.raises(ValidationFailed) as exc:
        await service.update_job(job_id, progress=101)
    assert exc.value.field == "progress"
    with pytest.raises(JobNotFound):
        await service.update_job("missing", message="x")
    await service.update_job(job_id, status="failed", error="boom")
    for change in ({"status": "queued"}, {"status": "processing"}, {"message": "late"}):
        with pytest.raises(InvalidTransition):
            await service.update_job(job_id, **change)  # type: ignore[arg-type]


async def test_update_progress(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("t")
    job = await service.update_progress(job_id, 40, "almost half")
    assert (job.progress, job.message) == (40, "almost half")
    job = await service.update_progress(job_id, 41)
    assert (job.progress, job.message) == (41, "almost half")
    for bad in (-1, 101):
        with pytest.raises(ValidationFailed):
            await service.update_progress(job_id, bad)
    with pytest.raises(JobNotFound):
        await service.update_progress("missing", 1)
    await service.update_job(job_id, status="completed")
    with pytest.raises(InvalidTransition):
        await service.update_progress(job_id, 10)


async def test_list_jobs(service: JobQueueService) -> None:
    a = await service.enqueue_job("a")
    b = await service.enqueue_job("b")
    await service.update_job(b, status="processing", worker_id="w")
    jobs, total = await service.list_jobs()
    assert [j.id for j in jobs] == [b, a] and total == 2
    assert [j.id for j in (await service.list_jobs(status="queued"))[0]] == [a]
    assert [j.id for j in (await service.list_jobs(status=[JobStatus.PROCESSING, "queued"]))[0]] == [b, a]
    assert [j.id for j in (await service.list_jobs(job_type="a"))[0]] == [a]
    assert [j.id for j in (await service.list_jobs(worker_id="w"))[0]] == [b]
    page, total = await service.list_jobs(limit=1, offset=1)
    assert [j.id for j in page] == [a] and total == 2
    for kwargs in ({"status": "nope"}, {"limit": 0}, {"limit": MAX_PAGE_SIZE + 1}, {"offset": -1}):
        with pytest.raises(ValidationFailed):
            await service.list_jobs(**kwargs)  # type: ignore[arg-type]


async def test_delete_job(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("t")
    with pytest.raises(InvalidTransition):
        await service.delete_job(job_id)
    await service.update_job(job_id, status="completed")
    await service.delete_job(job_id)
    assert await service.get_job(job_id) is None
    with pytest.raises(JobNotFound):
        await service.delete_job(job_id)


async def test_get_stats(service: JobQueueService) -> None:
    await service.enqueue_job("a")
    done = await service.enqueue_job("b")
    await service.update_job(done, status="processing")
    await service.update_job(done, status="completed")
    stats = await service.get_stats()
    assert stats.total == 2
    assert set(stats.by_status) == {s.value for s in JobStatus}
    assert (stats.by_status["queued"], stats.by_status["completed"]) == (1, 1)
    assert stats.avg_run_seconds is not None
    of_b = await service.get_stats("b")
    assert (of_b.job_type, of_b.total, of_b.by_status["completed"], of_b.ready) == ("b", 1, 1, 0)
