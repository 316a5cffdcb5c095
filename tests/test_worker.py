"""The in-process WorkerPool: slots, wake-ups, retries, timeouts, cancellation, fencing and drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from jobqueue.errors import LeaseLost
from jobqueue.handlers import default_registry
from jobqueue.models import JobStatus
from jobqueue.service import JobQueueService
from jobqueue.worker import JobContext, Reaper, Registry, WorkerPool
from tests.conftest import drain, make_settings
from tests.helpers import wait_until

DEADLINE = 30.0


def status_is(service: JobQueueService, job_id: str, status: JobStatus) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await service.require_job(job_id)).status is status

    return check


@asynccontextmanager
async def running_pool(service: JobQueueService, registry: Registry, **options: Any) -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(service, registry, **options)
    task = asyncio.create_task(pool.run())
    try:
        yield pool
    finally:
        pool.stop()
        await asyncio.wait_for(task, DEADLINE)


@pytest.fixture
async def short_lease_service(database_url: str) -> AsyncIterator[JobQueueService]:
    settings = make_settings(database_url, lease_seconds=0.5, poll_interval=0.05, retry_base_delay=0.05)
    async with JobQueueService.open(settings) as svc:
        yield svc


async def test_pool_runs_at_most_concurrency_jobs_at_once_and_completes_all(service: JobQueueService) -> None:
    registry = Registry()
    now_running = 0
    most = 0

    @registry.handler("work")
    async def work(ctx: JobContext) -> dict[str, int]:
        nonlocal now_running, most
        now_running += 1
        most = max(most, now_running)
        await asyncio.sleep(0.02)
        now_running -= 1
        return {"n": ctx.request_data["n"]}

    ids = [await service.enqueue_job("work", {"n": n}) for n in range(30)]
    pool = await drain(service, registry, concurrency=5)
    assert most == 5
    assert pool.processed == 30
    for n, job_id in enumerate(ids):
        job = await service.require_job(job_id)
        assert job.status is JobStatus.COMPLETED
        assert job.result_data == {"n": n}
        assert job.attempts == 1
        assert job.worker_id == pool.worker_id


async def test_one_claim_statement_takes_several_jobs(service: JobQueueService) -> None:
    for priority in (0, 2, 1, 2):
        await service.enqueue_job("work", priority=priority)
    claimed = await service.claim_jobs(worker_id="w", limit=3)
    assert [c.job.priority for c in claimed] == [2, 2, 1]
    assert len({c.claim_token for c in claimed}) == 3
    rest = await service.get_next_job(worker_id="w")
    assert rest is not None and rest.job.priority == 0
    assert await service.get_next_job(worker_id="w") is None


async def test_burst_pool_returns_at_once_on_an_empty_queue(service: JobQueueService) -> None:
    registry = Registry()
    registry.add("work", lambda ctx: asyncio.sleep(0))
    pool = await asyncio.wait_for(drain(service, registry), DEADLINE)
    assert pool.processed == 0
    assert pool.claim_queries == 1


async def test_pool_claims_only_its_job_types(service: JobQueueService) -> None:
    registry = Registry()
    registry.add("mine", lambda ctx: asyncio.sleep(0))
    registry.add("also_registered", lambda ctx: asyncio.sleep(0))
    mine = await service.enqueue_job("mine")
    theirs = await service.enqueue_job("theirs")
    registered_but_excluded = await service.enqueue_job("also_registered")
    pool = WorkerPool(service, registry, job_types=["mine"], poll_interval=0.01)
    await asyncio.wait_for(pool.run(burst=True), DEADLINE)
    assert (await service.require_job(mine)).status is JobStatus.COMPLETED
    assert (await service.require_job(theirs)).status is JobStatus.QUEUED
    assert (await service.require_job(registered_but_excluded)).status is JobStatus.QUEUED


def test_registry_and_pool_refuse_mistakes(service: JobQueueService) -> None:
    registry = Registry()
    registry.add("work", lambda ctx: asyncio.sleep(0))
    with pytest.raises(ValueError, match="already registered"):
        registry.add("work", lambda ctx: asyncio.sleep(0))
    with pytest.raises(ValueError, match="no handler registered for job type"):
        WorkerPool(service, registry, job_types=["work", "unknown"])


async def test_failing_handler_is_retried_with_backoff_and_keeps_the_last_error(service: JobQueueService) -> None:
    registry = Registry()
    attempts_seen: list[int] = []

    @registry.handler("flaky")
    async def flaky(ctx: JobContext) -> None:
        attempts_seen.append(ctx.job.attempts)
        raise RuntimeError(f"attempt {ctx.job.attempts} broke")

    job_id = await service.enqueue_job("flaky", max_attempts=3)
    async with running_pool(service, registry):
        await wait_until(status_is(service, job_id, JobStatus.FAILED), "the job to fail for good")
    job = await service.require_job(job_id)
    assert attempts_seen == [1, 2, 3]
    assert job.attempts == 3
    assert job.error == "RuntimeError: attempt 3 broke"
    assert job.completed_at is not None


async def test_fail_pushes_run_at_forward_by_the_backoff(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("work", max_attempts=5)
    for attempt in (1, 2, 3):
        claimed = await service.get_next_job(worker_id="w")
        while claimed is None:  # the previous backoff (50 ms base) has not passed yet
            await asyncio.sleep(0.02)
            claimed = await service.get_next_job(worker_id="w")
        before = time.time()
        job = await service.fail_job(job_id, claimed.claim_token, f"error {attempt}", attempts=claimed.job.attempts)
        assert job.status is JobStatus.QUEUED
        assert job.attempts == attempt
        assert job.error == f"error {attempt}"
        # Exponential with jitter: between half and all of base * 2**(attempt-1).
        ceiling = service.settings.retry_base_delay * 2 ** (attempt - 1)
        assert before + ceiling * 0.5 - 0.01 <= job.run_at.timestamp() <= time.time() + ceiling + 0.01


async def test_handler_past_its_timeout_is_cancelled_and_the_attempt_fails(service: JobQueueService) -> None:
    registry = Registry()
    cancelled_attempts: list[int] = []

    @registry.handler("slow")
    async def slow(ctx: JobContext) -> str:
        if ctx.job.attempts == 1:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled_attempts.append(ctx.job.attempts)
                raise
        return "second attempt was quick"

    job_id = await service.enqueue_job("slow", timeout=0.3, max_attempts=2)
    async with running_pool(service, registry):
        await wait_until(status_is(service, job_id, JobStatus.COMPLETED), "the retry to complete")
    job = await service.require_job(job_id)
    assert cancelled_attempts == [1]
    assert job.attempts == 2
    assert job.result_data == "second attempt was quick"


async def test_timeout_on_every_attempt_ends_failed_with_a_timeout_error(service: JobQueueService) -> None:
    registry = Registry()
    registry.add("stuck", lambda ctx: asyncio.sleep(60))
    job_id = await service.enqueue_job("stuck", timeout=0.2, max_attempts=2)
    async with running_pool(service, registry):
        await wait_until(status_is(service, job_id, JobStatus.FAILED), "the job to fail")
    job = await service.require_job(job_id)
    assert job.attempts == 2
    assert job.error == "timed out after 0.2s"


async def test_a_handler_raising_timeouterror_itself_is_an_ordinary_failure(service: JobQueueService) -> None:
    registry = Registry()

    @registry.handler("upstream")
    async def upstream(ctx: JobContext) -> None:
        raise TimeoutError("the upstream API did not answer")

    job_id = await service.enqueue_job("upstream", timeout=30, max_attempts=1)
    await drain(service, registry)
    job = await service.require_job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == "TimeoutError: the upstream API did not answer"


async def test_cancel_of_a_running_job_cancels_its_handler(service: JobQueueService) -> None:
    registry = Registry()
    started = asyncio.Event()
    interrupted = asyncio.Event()

    @registry.handler("forever")
    async def forever(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            interrupted.set()
            raise

    job_id = await service.enqueue_job("forever")
    async with running_pool(service, registry):
        await asyncio.wait_for(started.wait(), DEADLINE)
        await service.cancel_job(job_id)
        await wait_until(status_is(service, job_id, JobStatus.CANCELLED), "the job to end cancelled")
    assert interrupted.is_set()
    job = await service.require_job(job_id)
    assert job.attempts == 1
    assert job.lease_expires_at is None


async def test_cancel_of_a_waiting_job_is_immediate_and_it_never_runs(service: JobQueueService) -> None:
    registry = Registry()
    ran: list[str] = []

    @registry.handler("work")
    async def work(ctx: JobContext) -> None:
        ran.append(ctx.job.id)

    job_id = await service.enqueue_job("work")
    cancelled = await service.cancel_job(job_id)
    assert cancelled.status is JobStatus.CANCELLED
    await drain(service, registry)
    assert ran == []
    retried = await service.retry_job(job_id)
    assert retried.status is JobStatus.QUEUED
    await drain(service, registry)
    assert ran == [job_id]


async def test_delayed_job_is_not_claimed_before_it_is_due(service: JobQueueService) -> None:
    registry = Registry()
    started_at: list[float] = []

    @registry.handler("later")
    async def later(ctx: JobContext) -> None:
        started_at.append(time.time())

    job_id = await service.enqueue_job("later", delay=1.0)
    job = await service.require_job(job_id)
    assert await service.get_next_job(worker_id="w") is None
    async with running_pool(service, registry):
        await wait_until(status_is(service, job_id, JobStatus.COMPLETED), "the delayed job to run")
    assert started_at[0] >= job.run_at.timestamp()
    assert (await service.require_job(job_id)).started_at >= job.run_at  # type: ignore[operator]


async def test_progress_is_coalesced_and_the_last_report_is_written_before_completion(
    service: JobQueueService,
) -> None:
    registry = Registry()
    seen: dict[str, Any] = {}

    @registry.handler("chatty")
    async def chatty(ctx: JobContext) -> str:
        await ctx.set_status(JobStatus.RENDERING, "rendering", progress=10)
        seen["status"] = (await service.require_job(ctx.job.id)).status
        for step in range(11, 100):
            await ctx.progress(step, f"step {step}")
        return "done"

    job_id = await service.enqueue_job("chatty")
    await drain(service, registry)
    job = await service.require_job(job_id)
    assert seen["status"] is JobStatus.RENDERING  # a status change is written at once
    assert job.status is JobStatus.COMPLETED
    assert job.message == "step 99"  # the last coalesced report was flushed
    assert job.progress == 100


async def test_set_status_refuses_a_terminal_status(service: JobQueueService) -> None:
    registry = Registry()
    errors: list[str] = []

    @registry.handler("sneaky")
    async def sneaky(ctx: JobContext) -> None:
        try:
            await ctx.set_status(JobStatus.COMPLETED)
        except ValueError as exc:
            errors.append(str(exc))

    await service.enqueue_job("sneaky")
    await drain(service, registry)
    assert errors == ["a handler may only set a running status, not 'completed'"]


async def test_stale_claim_is_fenced_off_every_write(short_lease_service: JobQueueService) -> None:
    service = short_lease_service
    job_id = await service.enqueue_job("work")
    first = await service.get_next_job(worker_id="first")
    assert first is not None
    await wait_until(lambda: _reaped(service), "the lease to lapse and be reaped")
    requeued = await service.require_job(job_id)
    assert requeued.status is JobStatus.QUEUED
    assert requeued.error == "lease expired: worker first stopped heartbeating"
    second = await service.get_next_job(worker_id="second")
    assert second is not None and second.job.id == job_id

    for write in (
        lambda: service.heartbeat(job_id, first.claim_token),
        lambda: service.update_progress(job_id, 50, claim_token=first.claim_token),
        lambda: service.complete_job(job_id, first.claim_token, {"from": "first"}),
        lambda: service.fail_job(job_id, first.claim_token, "first failed"),
        lambda: service.release_job(job_id, first.claim_token),
        lambda: service.acknowledge_cancel(job_id, first.claim_token),
    ):
        with pytest.raises(LeaseLost, match="held by another claim"):
            await write()
    done = await service.complete_job(job_id, second.claim_token, {"from": "second"})
    assert done.result_data == {"from": "second"}
    with pytest.raises(LeaseLost, match="no longer valid"):
        await service.complete_job(job_id, first.claim_token, {"from": "first"})
    assert (await service.require_job(job_id)).result_data == {"from": "second"}


async def _reaped(service: JobQueueService) -> bool:
    return bool(await service.reap_expired())


async def test_lapsed_lease_on_the_last_attempt_fails_the_job_saying_why(
    short_lease_service: JobQueueService,
) -> None:
    service = short_lease_service
    job_id = await service.enqueue_job("work", max_attempts=1)
    assert await service.get_next_job(worker_id="doomed") is not None
    await wait_until(lambda: _reaped(service), "the lease to lapse and be reaped")
    job = await service.require_job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == "lease expired on all 1 attempts (last worker doomed): the job may be crashing its worker"


async def test_lapsed_lease_of_a_job_being_cancelled_ends_it_cancelled(short_lease_service: JobQueueService) -> None:
    service = short_lease_service
    job_id = await service.enqueue_job("work")
    assert await service.get_next_job(worker_id="gone") is not None
    await service.cancel_job(job_id)
    await wait_until(lambda: _reaped(service), "the lease to lapse and be reaped")
    assert (await service.require_job(job_id)).status is JobStatus.CANCELLED


async def test_pool_that_lost_its_claim_writes_nothing(short_lease_service: JobQueueService) -> None:
    service = short_lease_service
    registry = Registry()
    stolen: dict[str, str] = {}

    async def take_over() -> None:
        # What another process does while this one is frozen: reap the lapsed lease, claim.
        while not await service.reap_expired():
            time.sleep(service.settings.lease_seconds * 2)  # frozen: no heartbeat can run
        other = await service.get_next_job(worker_id="other")
        assert other is not None
        stolen["token"] = other.claim_token

    @registry.handler("victim")
    async def victim(ctx: JobContext) -> str:
        time.sleep(service.settings.lease_seconds * 2)
        # Shielded: the pool may notice the loss (its heartbeat is refused) and cancel this
        # handler while the take-over is still in flight.
        await asyncio.shield(take_over())
        await ctx.progress(50, "still mine?")
        await asyncio.sleep(60)  # never reached: LeaseLost or the pool's cancel stops us
        return "from the frozen attempt"

    job_id = await service.enqueue_job("victim")
    # One slot, so this pool cannot claim the job back itself while its handler holds the slot.
    async with running_pool(service, registry, concurrency=1) as pool:
        await wait_until(lambda: _has(stolen), "the job to be taken over")

        async def slot_freed() -> bool:
            return not pool.running

        await wait_until(slot_freed, "the pool to give up the job")
    job = await service.require_job(job_id)
    assert job.status is JobStatus.PROCESSING
    assert job.worker_id == "other"
    assert job.attempts == 2
    assert job.progress == 0
    assert pool.processed == 0
    done = await service.complete_job(job_id, stolen["token"], "from the second attempt")
    assert done.result_data == "from the second attempt"


async def _has(mapping: dict[str, str]) -> bool:
    return bool(mapping)


async def test_job_longer_than_its_lease_keeps_it_through_heartbeats(short_lease_service: JobQueueService) -> None:
    service = short_lease_service
    registry = Registry()
    registry.add("long", lambda ctx: asyncio.sleep(service.settings.lease_seconds * 5))
    job_id = await service.enqueue_job("long")
    reaper = asyncio.create_task(Reaper(service).run())
    try:
        async with running_pool(service, registry):
            await wait_until(status_is(service, job_id, JobStatus.COMPLETED), "the long job to complete")
    finally:
        reaper.cancel()
        await asyncio.gather(reaper, return_exceptions=True)
    job = await service.require_job(job_id)
    assert job.attempts == 1
    assert job.error is None


async def test_stop_lets_running_jobs_finish_within_the_grace(service: JobQueueService) -> None:
    registry = Registry()
    release = asyncio.Event()
    started = 0

    @registry.handler("gated")
    async def gated(ctx: JobContext) -> str:
        nonlocal started
        started += 1
        await release.wait()
        return "finished"

    ids = [await service.enqueue_job("gated") for _ in range(3)]
    late = None
    pool = WorkerPool(service, registry, concurrency=5, shutdown_grace=30)
    task = asyncio.create_task(pool.run())

    async def all_started() -> bool:
        return started == 3

    await wait_until(all_started, "three jobs to start")
    pool.stop()
    late = await service.enqueue_job("gated")
    release.set()
    await asyncio.wait_for(task, DEADLINE)
    for job_id in ids:
        job = await service.require_job(job_id)
        assert job.status is JobStatus.COMPLETED and job.attempts == 1
    assert (await service.require_job(late)).status is JobStatus.QUEUED


async def test_stop_after_a_short_grace_hands_jobs_back_without_counting_the_attempt(
    service: JobQueueService,
) -> None:
    registry = Registry()
    interrupted = 0

    @registry.handler("endless")
    async def endless(ctx: JobContext) -> None:
        nonlocal interrupted
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            interrupted += 1
            raise

    ids = [await service.enqueue_job("endless") for _ in range(3)]
    pool = WorkerPool(service, registry, concurrency=5, shutdown_grace=0.1)
    task = asyncio.create_task(pool.run())

    async def all_running() -> bool:
        return len(pool.running) == 3

    await wait_until(all_running, "three jobs to run")
    # Cancelling run() (what a lifespan shutdown does) still drains like stop().
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, DEADLINE)
    assert interrupted == 3
    for job_id in ids:
        job = await service.require_job(job_id)
        assert job.status is JobStatus.QUEUED
        assert job.attempts == 0
        assert job.lease_expires_at is None and job.worker_id is None
        assert job.message == "handed back: worker shut down"


async def test_idle_pool_polls_about_once_per_poll_interval(service: JobQueueService) -> None:
    registry = Registry()
    registry.add("work", lambda ctx: asyncio.sleep(0))
    async with running_pool(service, registry, poll_interval=0.2) as pool:
        await asyncio.sleep(1.0)
        queries = pool.claim_queries
    # About 1 s / 0.2 s; a busy loop would run thousands. Slow scheduling only lowers the count.
    assert 1 <= queries <= 1 / 0.2 + 2


async def test_job_enqueued_in_the_same_process_wakes_the_pool(service: JobQueueService) -> None:
    registry = Registry()
    registry.add("work", lambda ctx: asyncio.sleep(0))
    async with running_pool(service, registry, poll_interval=30) as pool:

        async def parked() -> bool:
            return pool.claim_queries >= 1

        await wait_until(parked, "the first (empty) claim")
        started = time.monotonic()
        job_id = await service.enqueue_job("work")
        await wait_until(status_is(service, job_id, JobStatus.COMPLETED), "the job to run")
        elapsed = time.monotonic() - started
        # The poll interval is 30 s: finishing well inside it means the enqueue woke the pool.
        assert elapsed < 10
        assert pool.claim_queries <= 4


async def test_example_generation_handler_walks_its_statuses_to_a_result(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("generation", {"model": "audiogen", "prompt": "rain", "duration": 1})
    await drain(service, default_registry())
    job = await service.require_job(job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.message == "writing the WAV file"  # the last running status's message
    assert job.result_data == {
        "model": "audiogen",
        "prompt": "rain",
        "duration": 1.0,
        "sample_rate": 16_000,
        "audio_url": f"/files/{job_id}.wav",
    }
