"""JobQueueService: the Python API of jobqueue (the seed's names), used by routes and workers.

It applies the rules that are not SQL (defaults, validation, backoff) and tells listeners about
new work after the change is committed. It holds no state of its own besides its collaborators,
so any number of tasks may share one instance.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from jobqueue.errors import BatchRefused, JobNotFound, JobQueueError, ValidationFailed
from jobqueue.events import EventHub, ListenerCutOff
from jobqueue.models import (
    HELD_JOB_IDS_SHOWN,
    MAX_BULK_JOBS,
    TERMINAL_STATUSES,
    ClaimedJob,
    JobCreate,
    EventKind,
    Job,
    JobEvent,
    JobStats,
    JobStatus,
    JobUpdate,
    Worker,
)
from jobqueue.settings import Settings
from jobqueue.storage import Store, open_store
from jobqueue.storage.base import BatchOutcome, NewJob

#: Largest page ``list_jobs`` returns.
MAX_PAGE_SIZE = 500
#: Window over which the stats' average wait and run times are computed.
TIMINGS_WINDOW_SECONDS = 3600.0
#: Longest pause between two attempts of a failing job.
MAX_BACKOFF_SECONDS = 600.0

_UNSET: Any = object()

#: Seconds a process reuses the set of job types live workers serve (the enqueue check reads
#: it on every request: at most one query per this interval, never one per enqueue).
LIVE_TYPES_TTL = 1.5


def backoff_seconds(attempts: int, base: float) -> float:
    """Exponential backoff with jitter: about base * 2**(attempts-1), between half and all of it.

    The jitter spreads the retries of jobs that failed together (a dependency went down) so they
    do not all come back at the same instant.
    """
    ceiling = min(MAX_BACKOFF_SECONDS, base * 2 ** max(attempts - 1, 0))
    return ceiling * random.uniform(0.5, 1.0)


#: Events that make a job claimable: idle worker pools wake up on them.
_NEW_WORK_EVENTS = frozenset({EventKind.CREATED, EventKind.RETRIED, EventKind.REQUEUED})


class JobQueueService:
    def __init__(self, store: Store, settings: Settings, events: EventHub) -> None:
        self.store = store
        self.settings = settings
        self.events = events
        # Worker pools of this process park on these; set when work appears in any process
        # (events of other processes arrive through Redis or the events-table poll).
        self._wakeups: set[asyncio.Event] = set()
        events.add_callback(self._on_event)
        # (monotonic time read, the job types live workers serve), and the read under way.
        self._live_types: tuple[float, frozenset[str]] | None = None
        self._live_types_read: asyncio.Future[frozenset[str]] | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[JobQueueService]:
        """Open the store, apply pending migrations, start the event hub; yield the service."""
        async with open_store(settings) as store:
            hub = EventHub(store, settings.redis_url)
            service = cls(store, settings, hub)
            await hub.start()
            try:
                yield service
            finally:
                await hub.stop()

    # -- wake-ups for worker pools ------------------------------------------------------------

    def add_wakeup(self, event: asyncio.Event) -> None:
        self._wakeups.add(event)

    def remove_wakeup(self, event: asyncio.Event) -> None:
        self._wakeups.discard(event)

    def _on_event(self, event: JobEvent) -> None:
        if event.kind in _NEW_WORK_EVENTS:
            for wakeup in self._wakeups:
                wakeup.set()

    # -- the seed's API -------------------------------------------------------------------------

    async def enqueue_job(
        self,
        job_type: str,
        request_data: dict[str, Any] | None = None,
        priority: int = 0,
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
        run_at: datetime | None = None,
        delay: float | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Queue a job and return its id."""
        job, _ = await self.create_job(
            job_type,
            request_data,
            priority,
            max_attempts=max_attempts,
            timeout=timeout,
            run_at=run_at,
            delay=delay,
            idempotency_key=idempotency_key,
        )
        return job.id

    async def create_job(
        self,
        job_type: str,
        request_data: dict[str, Any] | None = None,
        priority: int = 0,
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
        run_at: datetime | None = None,
        delay: float | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job; returns it and whether it is new (False: an idempotent replay)."""
        new = self._new_job(
            job_type, request_data, priority, max_attempts, timeout, run_at, delay, idempotency_key
        )
        return await self.store.insert_job(**new._asdict())

    def _new_job(
        self,
        job_type: str,
        request_data: dict[str, Any] | None,
        priority: int,
        max_attempts: int | None,
        timeout: float | None,
        run_at: datetime | None,
        delay: float | None,
        idempotency_key: str | None,
    ) -> NewJob:
        """A create request checked and with its defaults, as the store takes it."""
        if not job_type or len(job_type) > 100:
            raise ValidationFailed("job_type must be 1 to 100 characters", "job_type")
        if run_at is not None and delay is not None:
            raise ValidationFailed("give either run_at or delay, not both", "delay")
        due: float | None = None
        if run_at is not None:
            due = (run_at if run_at.tzinfo else run_at.replace(tzinfo=UTC)).timestamp()
        elif delay is not None:
            due = time.time() + delay
        return NewJob(
            job_type=job_type,
            request_data=request_data,
            priority=priority,
            max_attempts=max_attempts or self.settings.default_max_attempts,
            run_at=due,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )

    async def get_job(self, job_id: str) -> Job | None:
        return await self.store.get_job(job_id)

    async def require_job(self, job_id: str) -> Job:
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def update_job(
        self,
        job_id: str,
        *,
        status: JobStatus | str | None = None,
        progress: int | None = None,
        message: str | None = _UNSET,
        result_data: Any = _UNSET,
        error: str | None = _UNSET,
        worker_id: str | None = _UNSET,
        claim_token: str | None = None,
        force: bool = False,
    ) -> Job:
        """Change a job directly (operators, the seed's simple workers).

        Only the arguments given change; ``message=None`` clears the message. A finished job
        cannot be changed (``InvalidTransition``). Completing sets progress to 100. A job a
        worker holds changes only with its ``claim_token`` (``JobHeld`` otherwise) or with
        ``force``, which fences the worker out: its token stops working.
        """
        fields: set[str] = set()
        values: dict[str, Any] = {}
        if status is not None:
            fields.add("status")
            values["status"] = _status(status)
        if progress is not None:
            _check_progress(progress)
            fields.add("progress")
            values["progress"] = progress
        for name, value in (
            ("message", message),
            ("result_data", result_data),
            ("error", error),
            ("worker_id", worker_id),
        ):
            if value is not _UNSET:
                fields.add(name)
                values[name] = value
        if claim_token is not None:
            fields.add("claim_token")
            values["claim_token"] = claim_token
        return await self.apply_update(job_id, JobUpdate(**values), fields, force=force)

    async def apply_update(
        self, job_id: str, update: JobUpdate, fields: set[str], *, force: bool = False
    ) -> Job:
        """``update_job`` for an already validated ``JobUpdate`` (the HTTP body)."""
        return await self.store.update_job(
            job_id, update, fields, self.settings.lease_seconds, force=force
        )

    async def update_progress(
        self,
        job_id: str,
        progress: int,
        message: str | None = None,
        *,
        status: JobStatus | str | None = None,
        claim_token: str | None = None,
    ) -> Job:
        """Report progress. With ``claim_token`` it is fenced and counts as a heartbeat."""
        _check_progress(progress)
        new_status = None if status is None else _status(status)
        if claim_token is not None:
            return await self.store.report_progress(
                job_id,
                claim_token,
                progress=progress,
                message=message,
                status=new_status,
                lease=self.settings.lease_seconds,
            )
        fields = {"progress"} | ({"message"} if message is not None else set())
        if new_status is not None:
            fields.add("status")
        return await self.apply_update(
            job_id, JobUpdate(progress=progress, message=message, status=new_status), fields
        )

    async def get_next_job(
        self, job_types: Sequence[str] | None = None, worker_id: str = "default-worker"
    ) -> ClaimedJob | None:
        """Claim the best waiting job (highest priority, then oldest), or None."""
        claimed = await self.claim_jobs(job_types=job_types, worker_id=worker_id, limit=1)
        return claimed[0] if claimed else None

    async def claim_jobs(
        self,
        *,
        worker_id: str,
        job_types: Sequence[str] | None = None,
        limit: int = 1,
        lease: float | None = None,
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` jobs atomically; each comes with its claim token."""
        return await self.store.claim(
            worker_id=worker_id,
            job_types=job_types,
            limit=limit,
            lease=lease or self.settings.lease_seconds,
        )

    async def list_jobs(
        self,
        *,
        status: Sequence[JobStatus | str] | JobStatus | str | None = None,
        job_type: str | None = None,
        worker_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """A page of jobs, newest first, and how many match in all."""
        if isinstance(status, (str, JobStatus)):
            status = [status]
        statuses = [_status(s) for s in status] if status else None
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE_SIZE}", "limit")
        if offset < 0:
            raise ValidationFailed("offset must not be negative", "offset")
        return await self.store.list_jobs(
            statuses=statuses, job_type=job_type, worker_id=worker_id, limit=limit, offset=offset
        )

    async def delete_job(self, job_id: str) -> None:
        """Delete a finished job (``InvalidTransition`` for any other)."""
        await self.store.delete(job_id)

    async def get_stats(self, job_type: str | None = None) -> JobStats:
        counts = await self.store.count_by_status(job_type)
        by_status = {s.value: counts.get(s.value, 0) for s in JobStatus}
        ready, scheduled, oldest = await self.store.waiting_summary(job_type)
        wait, run = await self.store.recent_timings(job_type, time.time() - TIMINGS_WINDOW_SECONDS)
        waiting = await self.waiting_types()
        if job_type is not None:
            waiting &= {job_type}
        return JobStats(
            total=sum(by_status.values()),
            by_status=by_status,
            job_type=job_type,
            avg_wait_seconds=wait,
            avg_run_seconds=run,
            ready=ready,
            scheduled=scheduled,
            oldest_waiting_at=oldest,
            unserved_types=await self.unserved_types(waiting),
        )

    async def cancel_job(self, job_id: str, message: str | None = None) -> Job:
        """Cancel: a waiting job at once; a running one is stopped by its worker shortly."""
        return await self.store.cancel(job_id, message or "cancelled on request")

    async def retry_job(self, job_id: str) -> Job:
        """Put a failed or cancelled job back in the queue with a fresh set of attempts."""
        return await self.store.retry(job_id)

    # -- the holder's operations (fenced) -------------------------------------------------------

    async def heartbeat(self, job_id: str, claim_token: str) -> bool:
        """Extend the lease; True means a cancel was requested and the holder should stop."""
        return await self.store.heartbeat(job_id, claim_token, self.settings.lease_seconds)

    async def complete_job(
        self, job_id: str, claim_token: str, result_data: Any = None, message: str | None = None
    ) -> Job:
        return await self.store.complete(job_id, claim_token, result_data, message)

    async def fail_job(
        self,
        job_id: str,
        claim_token: str,
        error: str,
        *,
        retry: bool = True,
        attempts: int = 1,
        message: str | None = None,
    ) -> Job:
        """Record a failed attempt: retried after a backoff while attempts remain, else failed."""
        retry_at = time.time() + backoff_seconds(attempts, self.settings.retry_base_delay)
        return await self.store.fail(
            job_id, claim_token, error=error, retry=retry, retry_at=retry_at, message=message
        )

    async def acknowledge_cancel(self, job_id: str, claim_token: str) -> Job:
        return await self.store.acknowledge_cancel(job_id, claim_token, "cancelled on request")

    async def release_job(self, job_id: str, claim_token: str, message: str | None = None) -> Job:
        """Hand a held job back to the queue without counting the attempt."""
        return await self.store.release(job_id, claim_token, message)

    async def reap_expired(self) -> list[Job]:
        return await self.store.reap_expired()

    async def cancel_requested(self, worker_id: str) -> list[str]:
        return await self.store.cancel_requested(worker_id)

    async def ping(self) -> None:
        await self.store.ping()

    # -- events and retention --------------------------------------------------------------------

    async def job_events(self, job_id: str, after: int = 0) -> list[JobEvent]:
        """A job's stored events with a sequence number above ``after``, in order."""
        return await self.store.job_events_after(job_id, after)

    async def events_after(self, after: int, limit: int = 1000) -> list[JobEvent]:
        """All jobs' stored events with a global id above ``after``, in order."""
        return await self.store.events_after(after, limit)

    async def last_event_id(self) -> int:
        """The global id of the newest stored event (0 when there is none)."""
        return await self.store.last_event_id()

    async def wait_for_job(self, job_id: str, timeout: float) -> Job:
        """The job once it is finished, or as it is when ``timeout`` seconds have passed."""
        deadline = asyncio.get_running_loop().time() + timeout

        def finishes_it(event: JobEvent) -> bool:
            # Only events that finish the job: a flood of progress could otherwise cut the
            # waiter off, and a cut-off subscription answers every get at once (a busy loop).
            return event.job_id == job_id and event.status in TERMINAL_STATUSES

        with self.events.subscribe(finishes_it) as subscription:
            # Subscribed before reading, so a finish between the read and the wait is not missed.
            job = await self.require_job(job_id)
            while job.status not in TERMINAL_STATUSES:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    await subscription.get(timeout=min(remaining, 5.0))
                except ListenerCutOff:
                    # Only after thousands of finishes of one job; poll rather than spin.
                    await asyncio.sleep(min(remaining, 0.5))
                job = await self.require_job(job_id)
        return job

    async def prune(
        self, *, completed_older_than: float, failed_older_than: float, batch: int = 1000
    ) -> int:
        """Delete finished jobs (and their events) past their retention; returns how many.

        Completed jobs are kept ``completed_older_than`` seconds after they finished, failed and
        cancelled jobs ``failed_older_than``. Deletes run in batches so other writes interleave;
        the freed space is then handed back (SQLite's incremental vacuum).
        """
        now = time.time()
        cutoffs = {
            JobStatus.COMPLETED: now - completed_older_than,
            JobStatus.FAILED: now - failed_older_than,
            JobStatus.CANCELLED: now - failed_older_than,
        }
        deleted = 0
        for status, cutoff in cutoffs.items():
            while True:
                count = await self.store.prune(status, cutoff, batch)
                deleted += count
                if count < batch:
                    break
        if deleted:
            # In slices, so other writes interleave while many pages are handed back.
            while await self.store.reclaim_space() > 0:
                pass
        return deleted

    # -- worker pools you can see -------------------------------------------------------------

    async def register_worker(
        self, worker_id: str, *, host: str, pid: int, job_types: Sequence[str], concurrency: int, ttl: float
    ) -> Worker:
        """Register a worker pool, or renew its registration for ``ttl`` seconds (its heartbeat)."""
        worker = await self.store.register_worker(
            worker_id=worker_id, host=host, pid=pid, job_types=job_types, concurrency=concurrency, ttl=ttl
        )
        if self._live_types is not None and not self._live_types[1].issuperset(job_types):
            self._live_types = None  # this process's own change shows at once
        return worker

    async def unregister_worker(self, worker_id: str) -> bool:
        """A pool stopped: it is no longer listed. False when it was not registered."""
        removed = await self.store.unregister_worker(worker_id)
        self._live_types = None  # this process's own change shows at once
        return removed

    async def delete_lapsed_workers(self) -> int:
        return await self.store.delete_lapsed_workers()

    async def list_workers(self) -> list[Worker]:
        """The live worker pools, oldest first, with the jobs each holds."""
        return await self.store.live_workers(HELD_JOB_IDS_SHOWN)

    async def waiting_types(self) -> set[str]:
        """The job types that have waiting jobs."""
        return await self.store.waiting_types()

    async def unserved_types(self, job_types: Iterable[str]) -> list[str]:
        """Which of ``job_types`` no live worker serves, sorted (from the live types this
        process read within ``LIVE_TYPES_TTL`` seconds)."""
        served = await self._served_types()
        return sorted(set(job_types) - served)

    async def _served_types(self) -> frozenset[str]:
        now = time.monotonic()
        if self._live_types is not None and now - self._live_types[0] < LIVE_TYPES_TTL:
            return self._live_types[1]
        if self._live_types_read is None:
            # One read for every caller that finds the set stale at the same time.
            self._live_types_read = asyncio.ensure_future(self._read_live_types())
        read = self._live_types_read
        return await asyncio.shield(read)

    async def _read_live_types(self) -> frozenset[str]:
        try:
            types = frozenset(await self.store.live_worker_types())
            self._live_types = (time.monotonic(), types)
            return types
        finally:
            self._live_types_read = None

    # -- bulk operations ------------------------------------------------------------------------

    async def create_jobs(self, items: Sequence[JobCreate], *, atomic: bool = False) -> list[BatchOutcome]:
        """Queue a batch of jobs in one transaction; one outcome per item, in order: the job and
        whether it is new, or the error refusing it. With ``atomic`` any refused item raises
        ``BatchRefused`` (listing them) and nothing is stored."""
        checked: list[NewJob] = []
        positions: list[int] = []
        errors: list[tuple[int, JobQueueError]] = []
        for index, item in enumerate(items):
            try:
                checked.append(
                    self._new_job(
                        item.job_type, item.request_data, item.priority, item.max_attempts,
                        item.timeout, item.run_at, item.delay, item.idempotency_key,
                    )
                )  # fmt: skip
                positions.append(index)
            except ValidationFailed as exc:
                errors.append((index, exc))
        if atomic and errors:
            raise BatchRefused(errors, len(items))
        try:
            stored = await self.store.insert_jobs(checked, atomic=atomic) if checked else []
        except BatchRefused as exc:
            raise BatchRefused([(positions[i], error) for i, error in exc.errors], len(items)) from None
        ordered: dict[int, BatchOutcome] = dict(errors)
        ordered.update(zip(positions, stored))
        return [ordered[index] for index in range(len(items))]

    async def retry_failed(self, job_type: str, limit: int = MAX_BULK_JOBS) -> tuple[list[str], bool]:
        """Put up to ``limit`` failed jobs of a type back in the queue (a ``retried`` event each);
        returns their ids and whether failed jobs of the type remain."""
        return await self.store.retry_failed(job_type, _bulk_limit(limit))

    async def cancel_waiting(self, job_type: str, limit: int = MAX_BULK_JOBS) -> tuple[list[str], bool]:
        """Cancel up to ``limit`` waiting jobs of a type (a ``cancelled`` event each); returns
        their ids and whether waiting jobs of the type remain. Running jobs are not touched."""
        return await self.store.cancel_waiting(
            job_type, _bulk_limit(limit), f"cancelled on request, with every waiting {job_type} job"
        )

    async def purge_jobs(
        self,
        statuses: Sequence[JobStatus | str],
        *,
        job_type: str | None = None,
        before: datetime | None = None,
        limit: int = MAX_BULK_JOBS,
    ) -> tuple[list[str], bool]:
        """Delete up to ``limit`` finished jobs in ``statuses`` (optionally of one type, finished
        before ``before``) with their events; returns their ids and whether more match."""
        wanted = [_status(s) for s in statuses]
        if not wanted or any(s not in TERMINAL_STATUSES for s in wanted):
            raise ValidationFailed(
                "status must be one or more of completed, failed, cancelled: only finished jobs are purged",
                "status",
            )
        cutoff = None
        if before is not None:
            cutoff = (before if before.tzinfo else before.replace(tzinfo=UTC)).timestamp()
        return await self.store.purge(wanted, job_type, cutoff, _bulk_limit(limit))


def _bulk_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_BULK_JOBS:
        raise ValidationFailed(f"limit must be between 1 and {MAX_BULK_JOBS}", "limit")
    return limit


def _status(value: JobStatus | str) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise ValidationFailed(f"unknown status {value!r}; expected one of: {known}", "status") from None


def _check_progress(progress: int) -> None:
    if not isinstance(progress, int) or not 0 <= progress <= 100:
        raise ValidationFailed("progress must be an integer from 0 to 100", "progress")
