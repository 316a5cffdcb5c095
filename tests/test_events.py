"""Job events at the repository and hub level: one stored event per change, atomic with it,
delivered once per process, bounded listeners, and the progress coalescing rule."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest

from jobqueue.errors import DatabaseError, InvalidTransition, LeaseLost
from jobqueue.events import EVENTS_CHANNEL, ListenerCutOff
from jobqueue.models import EventKind, JobEvent, JobStatus
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings
from jobqueue.worker import PROGRESS_WRITE_INTERVAL, JobContext, Registry
from tests.conftest import drain, make_settings
from tests.helpers import refuse_events_with_message, stored_events, wait_until


async def _collect(subscription: object, count: int, timeout: float = 20.0) -> list[JobEvent]:
    events: list[JobEvent] = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        event = await subscription.get(timeout=0.2)  # type: ignore[attr-defined]
        if event is not None:
            events.append(event)
    return events


async def test_every_change_is_an_event_with_per_job_seq_and_global_id(
    service: JobQueueService, settings: Settings
) -> None:
    job_id = await service.enqueue_job("render", {"n": 1})
    other_id = await service.enqueue_job("render", {"n": 2})
    claimed = await service.get_next_job(worker_id="w1")
    assert claimed is not None and claimed.job.id == job_id
    token = claimed.claim_token
    await service.update_progress(job_id, 10, "warming up", claim_token=token)
    await service.update_progress(job_id, 20, status=JobStatus.RENDERING, claim_token=token)
    await service.cancel_job(other_id)
    await service.complete_job(job_id, token, {"frames": 3})

    events = await service.job_events(job_id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.kind for e in events] == [
        EventKind.CREATED,
        EventKind.STATUS,
        EventKind.PROGRESS,
        EventKind.STATUS,
        EventKind.COMPLETED,
    ]
    assert [e.status for e in events] == [
        JobStatus.QUEUED,
        JobStatus.PROCESSING,
        JobStatus.PROCESSING,
        JobStatus.RENDERING,
        JobStatus.COMPLETED,
    ]
    assert events[2].progress == 10 and events[2].message == "warming up"
    assert events[-1].progress == 100 and events[-1].data == {"frames": 3}
    job = await service.require_job(job_id)
    assert job.event_seq == 5

    other = await service.job_events(other_id)
    assert [(e.seq, e.kind) for e in other] == [(1, EventKind.CREATED), (2, EventKind.CANCELLED)]

    # Global ids: strictly increasing in commit order across jobs, and what events_after returns.
    everything = await service.events_after(0)
    ids = [e.id for e in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == 7
    assert {e.id for e in events} | {e.id for e in other} == set(ids)
    assert [e.id for e in await service.events_after(ids[3])] == ids[4:]
    assert len(stored_events(settings.database_url)) == 7


async def test_retry_failure_and_requeue_are_events(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("render", max_attempts=2)
    first = await service.get_next_job()
    assert first is not None
    await service.fail_job(job_id, first.claim_token, "boom", attempts=1)
    job = await service.require_job(job_id)
    assert job.status is JobStatus.QUEUED
    await service.update_job(job_id, status=JobStatus.FAILED, error="gave up")
    await service.retry_job(job_id)
    kinds = [(e.seq, e.kind, e.status) for e in await service.job_events(job_id)]
    assert kinds == [
        (1, EventKind.CREATED, JobStatus.QUEUED),
        (2, EventKind.STATUS, JobStatus.PROCESSING),
        (3, EventKind.REQUEUED, JobStatus.QUEUED),
        (4, EventKind.FAILED, JobStatus.FAILED),
        (5, EventKind.RETRIED, JobStatus.QUEUED),
    ]
    requeued = (await service.job_events(job_id))[2]
    assert requeued.data == {"error": "boom"}


async def test_refused_changes_write_no_event(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("render", idempotency_key="k1")
    again = await service.enqueue_job("render", idempotency_key="k1")
    assert again == job_id  # an idempotent replay changes nothing, so it records nothing
    claimed = await service.get_next_job()
    assert claimed is not None
    with pytest.raises(LeaseLost):
        await service.update_progress(job_id, 50, claim_token="not-the-token")
    await service.complete_job(job_id, claimed.claim_token, None)
    with pytest.raises(InvalidTransition):
        await service.update_job(job_id, progress=10)
    assert [e.seq for e in await service.job_events(job_id)] == [1, 2, 3]
    assert (await service.require_job(job_id)).event_seq == 3


async def test_a_change_and_its_event_commit_or_fail_together(
    service: JobQueueService, settings: Settings
) -> None:
    """A change whose event cannot be stored is rolled back, and its neighbours in the same
    group-commit batch still commit with their own events (published with the ids stored)."""
    jobs = [await service.enqueue_job("render", {"i": i}) for i in range(20)]
    # A real trigger makes storing one particular event fail after the job row changed.
    refuse_events_with_message(settings.database_url, "boom")
    with service.events.subscribe(lambda e: e.kind is EventKind.PROGRESS) as subscription:
        results = await asyncio.gather(
            *(
                service.update_job(job_id, progress=50, message="boom" if i == 7 else f"ok {i}")
                for i, job_id in enumerate(jobs)
            ),
            return_exceptions=True,
        )
        assert isinstance(results[7], DatabaseError)
        assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 7)
        published = await _collect(subscription, 19)

    refused = await service.require_job(jobs[7])
    assert refused.progress == 0 and refused.message is None and refused.event_seq == 1
    assert [e.seq for e in await service.job_events(jobs[7])] == [1]

    stored = {row["id"]: row for row in stored_events(settings.database_url) if row["kind"] == "progress"}
    assert len(stored) == 19
    assert sorted(e.id for e in published) == sorted(stored)
    for event in published:
        row = stored[event.id]
        assert (row["job_id"], row["seq"], row["message"]) == (event.job_id, 2, event.message)
    for i, job_id in enumerate(jobs):
        if i != 7:
            job = await service.require_job(job_id)
            assert (job.progress, job.message, job.event_seq) == (50, f"ok {i}", 2)


async def test_listeners_get_events_after_commit_in_order(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("render")
    seen_in_db: list[bool] = []

    with service.events.subscribe(lambda e: e.job_id == job_id) as subscription:
        for step in range(1, 6):
            await service.update_job(job_id, progress=step * 10)
        received = await _collect(subscription, 5)
        for event in received:
            # Delivered after commit: a reader connection already sees the row.
            stored = await service.job_events(job_id, event.seq - 1)
            seen_in_db.append(bool(stored) and stored[0].id == event.id)
    assert [e.seq for e in received] == [2, 3, 4, 5, 6]
    assert [e.progress for e in received] == [10, 20, 30, 40, 50]
    assert all(seen_in_db)
    assert service.events.listener_count == 0


async def test_a_slow_listener_is_cut_off_and_others_keep_receiving(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("render")
    before = service.events.cut_off
    with (
        service.events.subscribe(lambda e: e.job_id == job_id, maxsize=3) as slow,
        service.events.subscribe(lambda e: e.job_id == job_id) as healthy,
    ):
        for step in range(1, 11):
            await service.update_job(job_id, progress=step)
        # What fitted in the queue is still handed out, then the cut-off is reported.
        kept = [await slow.get(timeout=1) for _ in range(3)]
        assert [e.progress for e in kept if e is not None] == [1, 2, 3]
        with pytest.raises(ListenerCutOff):
            await slow.get(timeout=1)
        # Once cut off, it never accumulates again: memory stays bounded.
        await service.update_job(job_id, progress=50)
        assert slow.queue.qsize() == 0
        with pytest.raises(ListenerCutOff):
            await slow.get(timeout=0.1)
        received = await _collect(healthy, 11)
        assert [e.progress for e in received] == [*range(1, 11), 50]
    assert service.events.cut_off == before + 1
    # The cut-off listener resumes from the database after the last event it got.
    missed = await service.job_events(job_id, kept[-1].seq)  # type: ignore[union-attr]
    assert [e.progress for e in missed] == [*range(4, 11), 50]


async def test_events_of_another_hub_on_the_same_database_arrive_from_the_database(
    service: JobQueueService, settings: Settings
) -> None:
    """Without Redis, a second service (as another process would) on the same database still
    sees every event: its hub reads the events table (polling it, or told by PostgreSQL's
    commit signal)."""
    async with JobQueueService.open(settings) as other:
        assert other.events.redis_state == "not configured"
        with other.events.subscribe(lambda e: e.job_type == "polled") as subscription:
            job_id = await service.enqueue_job("polled")
            await service.update_job(job_id, progress=40, message="half-way")
            await service.cancel_job(job_id)
            received = await _collect(subscription, 3)
            # Dispatched once, even though this hub polls repeatedly.
            assert await subscription.get(timeout=1.0) is None
    assert [(e.seq, e.kind) for e in received] == [
        (1, EventKind.CREATED),
        (2, EventKind.PROGRESS),
        (3, EventKind.CANCELLED),
    ]


async def test_events_cross_hubs_over_redis(database_url: str, second_database_url: str, redis_url: str) -> None:
    """Two services on *different* databases share nothing but Redis: an event reaching the
    second one can only have come over the pub/sub channel."""
    publisher_settings = make_settings(database_url, redis_url=redis_url)
    listener_settings = make_settings(second_database_url, redis_url=redis_url)
    async with (
        JobQueueService.open(publisher_settings) as publisher,
        JobQueueService.open(listener_settings) as listener,
    ):
        await wait_until(
            lambda: publisher.events.redis_state == "ok" and listener.events.redis_state == "ok", "both hubs on Redis"
        )
        # Other test runs may share this Redis: listen to a job type nobody else uses.
        job_type = f"over-redis-{uuid.uuid4().hex}"
        with listener.events.subscribe(lambda e: e.job_type == job_type) as subscription:
            job_id = await publisher.enqueue_job(job_type)
            await publisher.update_job(job_id, progress=30, message="via redis")
            await publisher.cancel_job(job_id)
            received = await _collect(subscription, 3)
        assert await listener.get_job(job_id) is None  # not in the listener's database
    assert [(e.seq, e.kind, e.progress, e.message) for e in received] == [
        (1, EventKind.CREATED, 0, None),
        (2, EventKind.PROGRESS, 30, "via redis"),
        (3, EventKind.CANCELLED, 30, "cancelled on request"),
    ]
    assert EVENTS_CHANNEL == "jobqueue:events"


async def test_new_work_wakes_pools_of_another_process_over_redis(
    database_url: str, second_database_url: str, redis_url: str
) -> None:
    async with (
        JobQueueService.open(make_settings(database_url, redis_url=redis_url)) as producer,
        JobQueueService.open(make_settings(second_database_url, redis_url=redis_url)) as consumer,
    ):
        await wait_until(
            lambda: producer.events.redis_state == "ok" and consumer.events.redis_state == "ok", "both hubs on Redis"
        )
        wakeup = asyncio.Event()
        consumer.add_wakeup(wakeup)
        try:
            await producer.enqueue_job("wake-me")
            await asyncio.wait_for(wakeup.wait(), 20)
        finally:
            consumer.remove_wakeup(wakeup)


async def _every_kind_of_event(service: JobQueueService) -> None:
    """Jobs whose events cover every way into the queue and several ways out of it."""
    first = await service.enqueue_job("kinds", max_attempts=2)  # created
    blocked = await service.enqueue_job("kinds", depends_on=[first])  # created (blocked)
    claim = await service.get_next_job(job_types=["kinds"])
    assert claim is not None and claim.job.id == first  # status: processing
    await service.update_progress(first, 10, "working", claim_token=claim.claim_token)  # progress
    await service.fail_job(first, claim.claim_token, "boom", attempts=1, retry_delay=0)  # requeued
    claim = await service.get_next_job(job_types=["kinds"])
    assert claim is not None and claim.job.id == first
    await service.complete_job(first, claim.claim_token, {"ok": True})  # completed; blocked: status queued
    await service.cancel_job(blocked)  # cancelled
    await service.retry_job(blocked)  # retried


async def test_the_store_fetches_only_new_work_events_when_asked(service: JobQueueService) -> None:
    """``new_work_only`` is the same test in SQL as ``JobEvent.signals_new_work`` in Python, on
    every backend, and it still reads (and reports) every id."""
    start = await service.last_event_id()
    await _every_kind_of_event(service)
    every, last, read = await service.store.unseen_events_after(start, set())
    new_work, new_last, new_read = await service.store.unseen_events_after(start, set(), new_work_only=True)
    assert (new_last, new_read) == (last, read) == (every[-1].id, len(every))
    assert {e.kind for e in every} >= {
        EventKind.CREATED, EventKind.STATUS, EventKind.PROGRESS, EventKind.REQUEUED,
        EventKind.COMPLETED, EventKind.CANCELLED, EventKind.RETRIED,
    }  # fmt: skip
    assert [e.id for e in new_work] == [e.id for e in every if e.signals_new_work]
    assert [(e.kind, e.status) for e in new_work] == [
        (EventKind.CREATED, JobStatus.QUEUED),
        (EventKind.CREATED, JobStatus.BLOCKED),
        (EventKind.REQUEUED, JobStatus.QUEUED),
        (EventKind.STATUS, JobStatus.QUEUED),  # unblocked: its dependency completed
        (EventKind.RETRIED, JobStatus.QUEUED),
    ]


async def test_a_hub_that_only_wakes_workers_reads_only_new_work_of_other_processes(
    service: JobQueueService, settings: Settings
) -> None:
    """A worker process's hub has one listener, the pools' wake-up: its poll fetches only the
    other processes' events that put a job in the queue. A subscription makes it fetch all."""
    async with JobQueueService.open(settings) as worker_process:
        polled: list[JobEvent] = []
        worker_process.events.add_callback(polled.append, new_work_only=True)
        await worker_process.events.catch_up()
        await _every_kind_of_event(service)
        await worker_process.events.catch_up()
        assert polled and all(e.signals_new_work for e in polled)
        assert [e.id for e in polled] == [e.id for e in await service.events_after(0) if e.signals_new_work]

        with worker_process.events.subscribe(lambda e: e.job_type == "kinds") as subscription:
            job_id = await service.enqueue_job("kinds")
            await service.update_job(job_id, progress=40, message="half-way")
            await service.cancel_job(job_id)
            await worker_process.events.catch_up()
            received = await _collect(subscription, 3)
        assert [e.kind for e in received] == [EventKind.CREATED, EventKind.PROGRESS, EventKind.CANCELLED]


async def test_a_listener_subscribing_during_a_new_work_poll_misses_nothing(
    service: JobQueueService, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll that started with nobody subscribed fetches only new-work events; a listener that
    subscribes while it reads gets the other events of those ids too (the poll reads again)."""
    async with JobQueueService.open(settings) as other:
        await other.events.catch_up()
        store_read = other.store.unseen_events_after
        subscribing = contextlib.ExitStack()
        subscriptions: list[object] = []

        async def read_while_a_listener_arrives(*args: object, **kwargs: object) -> object:
            result = await store_read(*args, **kwargs)  # type: ignore[arg-type]
            if not subscriptions and result[2]:  # type: ignore[index]
                # The first read that found events (the hub's own poll may be first: PostgreSQL
                # signals each commit): the listener subscribes while it runs.
                assert kwargs["new_work_only"] is True
                subscriptions.append(subscribing.enter_context(other.events.subscribe(lambda e: e.job_type == "late")))
            return result

        monkeypatch.setattr(other.store, "unseen_events_after", read_while_a_listener_arrives)
        with subscribing:
            job_id = await service.update_job(await service.enqueue_job("late"), progress=40, message="half-way")
            await service.cancel_job(job_id.id)
            await other.events.catch_up()
            assert subscriptions, "the hub never read the events"
            received = await _collect(subscriptions[0], 3)
    assert [e.kind for e in received] == [EventKind.CREATED, EventKind.PROGRESS, EventKind.CANCELLED]


# -- progress coalescing ---------------------------------------------------------------------


async def test_a_progress_flood_writes_a_bounded_number_of_rows(service: JobQueueService) -> None:
    """Thousands of reports per second: progress rows stay bounded by the write interval, every
    status change is stored, and the last progress and message are stored before completion."""
    reports = 20_000
    timing: dict[str, float] = {}
    registry = Registry()

    @registry.handler("flood")
    async def flood(ctx: JobContext) -> str:
        started = time.monotonic()
        for i in range(reports):
            if i == reports // 2:
                await ctx.set_status(JobStatus.RENDERING, "half-way status")
            await ctx.progress(i * 100 // reports, f"report {i}")
            await asyncio.sleep(0)  # let the coalesced write run, like real work would
        await ctx.progress(97, "last words")
        timing["elapsed"] = time.monotonic() - started
        return "done"

    job_id = await service.enqueue_job("flood")
    await drain(service, registry)

    events = await service.job_events(job_id)
    kinds = [e.kind for e in events]
    assert kinds[0] is EventKind.CREATED and kinds[1] is EventKind.STATUS
    assert kinds[-1] is EventKind.COMPLETED
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    status_changes = [e for e in events if e.kind is EventKind.STATUS]
    assert [e.status for e in status_changes] == [JobStatus.PROCESSING, JobStatus.RENDERING]
    assert status_changes[1].message == "half-way status"
    last_progress = events[-2]
    assert (last_progress.kind, last_progress.progress, last_progress.message) == (
        EventKind.PROGRESS,
        97,
        "last words",
    )
    progress_rows = sum(1 for k in kinds if k is EventKind.PROGRESS)
    # At most one write per interval (plus the first report, the one after the status change
    # and the final flush): a bound that follows from the rule, whatever the machine's speed.
    bound = timing["elapsed"] / PROGRESS_WRITE_INTERVAL + 4
    assert 1 <= progress_rows <= bound
    assert progress_rows < reports / 10
    job = await service.require_job(job_id)
    assert job.status is JobStatus.COMPLETED and job.message == "last words"


async def test_coalesced_progress_is_written_without_a_further_report(service: JobQueueService) -> None:
    """A report merged into the pending one is written shortly after even if the handler then
    goes quiet for a long time (it does not wait for the next report or the end)."""
    registry = Registry()
    seen: dict[str, object] = {}

    @registry.handler("quiet")
    async def quiet(ctx: JobContext) -> None:
        await ctx.progress(10, "first")
        await ctx.progress(20, "second")  # within the interval: coalesced
        await ctx.progress(30)  # no message: the pending message is kept
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            job = await service.require_job(ctx.job.id)
            if job.progress == 30:
                seen["job"] = job
                break
            await asyncio.sleep(0.02)

    job_id = await service.enqueue_job("quiet")
    await drain(service, registry)
    job = seen.get("job")
    assert job is not None, "the coalesced report was never written while the handler ran"
    assert job.message == "second"  # type: ignore[attr-defined]
    progress = [(e.progress, e.message) for e in await service.job_events(job_id) if e.kind is EventKind.PROGRESS]
    assert progress[0] == (10, "first") and progress[-1] == (30, "second")


async def test_a_waiter_is_not_flooded_by_progress(service: JobQueueService) -> None:
    """``wait_for_job`` only cares about the job finishing: thousands of progress events while
    it waits neither cut it off (after which it used to spin on the database until its
    timeout) nor delay its answer."""
    job_id = await service.enqueue_job("render")
    before = service.events.cut_off
    waiter = asyncio.create_task(service.wait_for_job(job_id, timeout=60))
    await asyncio.sleep(0.05)  # the waiter is subscribed
    await asyncio.gather(*(service.update_job(job_id, progress=i % 100) for i in range(5000)))
    assert not waiter.done()
    assert service.events.cut_off == before
    await service.update_job(job_id, status=JobStatus.COMPLETED, result_data={"ok": True})
    async with asyncio.timeout(20):
        job = await waiter
    assert job.status is JobStatus.COMPLETED and job.result_data == {"ok": True}
    assert service.events.cut_off == before
