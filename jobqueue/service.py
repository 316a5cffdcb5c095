"""JobQueueService: the Python API of jobqueue (the seed's names), used by routes and workers.

It applies the rules that are not SQL (defaults, validation, backoff) and tells listeners about
new work after the change is committed. It holds no state of its own besides its collaborators,
so any number of tasks may share one instance.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec

from jobqueue import tracing
from jobqueue.errors import BatchRefused, JobNotFound, JobQueueError, ScheduleNotFound, ValidationFailed
from jobqueue.events import EventHub, ListenerCutOff
from jobqueue.models import (
    ACTIVE_STATUSES,
    HELD_JOB_IDS_SHOWN,
    MAX_BULK_JOBS,
    MAX_DEBOUNCE_SECONDS,
    MAX_DEPENDENCIES,
    MAX_TIMINGS_WINDOW,
    MAX_TRACEBACK_CHARS,
    TERMINAL_STATUSES,
    TIMING_PERCENTILES,
    TIMINGS_SAMPLE,
    Attempt,
    AttemptList,
    ClaimedJob,
    JobCreate,
    EventKind,
    Job,
    JobEvent,
    JobStats,
    JobStatus,
    JobUpdate,
    Timings,
    Worker,
    Schedule,
    ScheduleName,
    ScheduleSpec,
    RateLimit,
    TypeControls,
    TypeControlsUpdate,
)
from jobqueue.scheduler import check_spec, next_tick
from jobqueue.settings import Settings
from jobqueue.storage import Store, open_store
from jobqueue.storage.base import BatchOutcome, NewJob
from jobqueue.storage.rules import (
    MAX_DATA_FILTERS,
    Dependencies,
    UniqueKey,
    check_id_prefix,
    data_filter,
)

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


class JobQueueService:
    def __init__(self, store: Store, settings: Settings, events: EventHub) -> None:
        self.store = store
        self.settings = settings
        self.events = events
        # Worker pools of this process park on these; set when work appears in any process
        # (events of other processes arrive through Redis or the events-table poll).
        self._wakeups: set[asyncio.Event] = set()
        # Only the events that put a job in the queue: a process whose only listener is this
        # (a worker process) does not read the other processes' other events at all.
        events.add_callback(self._on_event, new_work_only=True)
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
        if event.signals_new_work:
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
        concurrency_key: str | None = None,
        depends_on: Sequence[str] | None = None,
        on_dependency_failure: str | None = None,
        unique_key: str | None = None,
        debounce: float | None = None,
    ) -> str:
        """Queue a job and return its id (with ``unique_key``, maybe the id of the job already
        holding the key)."""
        job, _ = await self.create_job(
            job_type,
            request_data,
            priority,
            max_attempts=max_attempts,
            timeout=timeout,
            run_at=run_at,
            delay=delay,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
            unique_key=unique_key,
            debounce=debounce,
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
        concurrency_key: str | None = None,
        depends_on: Sequence[str] | None = None,
        on_dependency_failure: str | None = None,
        unique_key: str | None = None,
        debounce: float | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job; returns it and whether it is new (False: an idempotent replay, or the
        unfinished job already holding ``unique_key``: see ``deduplicated``).

        ``concurrency_key`` (a tenant, a user) is what the type's ``max_running_per_key`` counts.

        ``depends_on``: the job is ``blocked`` until these jobs completed (``on_dependency_failure``
        ``"run"``: until they finished, however). ``unique_key``: at most one unfinished job per
        key. ``debounce`` (needs ``unique_key``): run this many seconds from now, and a repeat
        while the job still waits replaces its request_data and pushes its run_at again.

        ``trace_context`` (an OpenTelemetry carrier; default: the span current here, with the
        ``otel`` extra) is what each attempt's span links to.
        """
        new = self._new_job(
            job_type, request_data, priority, max_attempts, timeout, run_at, delay, idempotency_key,
            concurrency_key, depends_on, on_dependency_failure, unique_key, debounce, trace_context,
        )  # fmt: skip
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
        concurrency_key: str | None = None,
        depends_on: Sequence[str] | None = None,
        on_dependency_failure: str | None = None,
        unique_key: str | None = None,
        debounce: float | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> NewJob:
        """A create request checked and with its defaults, as the store takes it."""
        if not job_type or len(job_type) > 100:
            raise ValidationFailed("job_type must be 1 to 100 characters", "job_type")
        if run_at is not None and delay is not None:
            raise ValidationFailed("give either run_at or delay, not both", "delay")
        dependencies = _dependencies(depends_on, on_dependency_failure)
        unique = _unique_key(unique_key, debounce, run_at is not None or delay is not None)
        due: float | None = None
        if run_at is not None:
            due = (run_at if run_at.tzinfo else run_at.replace(tzinfo=UTC)).timestamp()
        elif delay is not None:
            due = time.time() + delay
        elif debounce is not None:
            due = time.time() + debounce
        return NewJob(
            job_type=job_type,
            request_data=request_data,
            priority=priority,
            max_attempts=max_attempts or self.settings.default_max_attempts,
            run_at=due,
            timeout=timeout,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            dependencies=dependencies,
            unique=unique,
            trace_context=trace_context if trace_context is not None else tracing.current(),
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
        id_prefix: str | None = None,
        data: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """A page of jobs, newest first, and how many match in all.

        ``id_prefix`` keeps the jobs whose id starts with it; ``data`` maps top-level fields of
        ``request_data`` to the value each must equal (a string, or a number written as text).
        """
        if isinstance(status, (str, JobStatus)):
            status = [status]
        statuses = [_status(s) for s in status] if status else None
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE_SIZE}", "limit")
        if offset < 0:
            raise ValidationFailed("offset must not be negative", "offset")
        if data and len(data) > MAX_DATA_FILTERS:
            raise ValidationFailed(f"at most {MAX_DATA_FILTERS} data.<field> filters", "data")
        return await self.store.list_jobs(
            statuses=statuses,
            job_type=job_type,
            worker_id=worker_id,
            id_prefix=check_id_prefix(id_prefix) if id_prefix is not None else None,
            data=[data_filter(name, value) for name, value in (data or {}).items()],
            limit=limit,
            offset=offset,
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

    async def timings(self, window: float = TIMINGS_WINDOW_SECONDS) -> Timings:
        """Wait and run time percentiles per job type, over jobs finished in the last ``window``
        seconds (the most recent ``TIMINGS_SAMPLE`` of them)."""
        if not 0 < window <= MAX_TIMINGS_WINDOW:
            raise ValidationFailed(f"window must be more than 0 and at most {MAX_TIMINGS_WINDOW} seconds", "window")
        items = await self.store.timings(time.time() - window, TIMINGS_SAMPLE, TIMING_PERCENTILES)
        return Timings(window=window, items=items, sampled=sum(item.count for item in items) >= TIMINGS_SAMPLE)

    async def cancel_job(self, job_id: str, message: str | None = None) -> Job:
        """Cancel: a waiting or blocked job at once; a running one is stopped by its worker shortly.

        Its blocked dependents under the ``cancel`` policy are cancelled with it (by the store)."""
        return await self.store.cancel(job_id, message or "cancelled on request")

    async def retry_job(self, job_id: str) -> Job:
        """Put a failed or cancelled job back in the queue with a fresh set of attempts.

        Dependencies are not looked at again: a retried dependent is queued at once, and a
        retried dependency does not bring back the dependents its failure cancelled."""
        return await self.store.retry(job_id)

    # -- flow control per job type -------------------------------------------------------------

    async def job_types(self) -> list[TypeControls]:
        """Every type with controls or with jobs: its controls, running jobs and counts."""
        return await self.store.list_type_controls()

    async def type_controls(self, job_type: str) -> TypeControls:
        return await self.store.get_type_controls(_check_job_type(job_type))

    async def set_type_controls(self, job_type: str, update: TypeControlsUpdate) -> TypeControls:
        """Change the controls ``update`` sends (null clears a limit); every process's next
        claim obeys them. A limit lowered below the jobs running stops new starts; it does not
        stop running jobs."""
        controls = await self.store.set_type_controls(_check_job_type(job_type), update)
        # A resumed type or a raised limit may have work for this process's idle pools now
        # (pools of other processes see it at their next poll).
        for wakeup in self._wakeups:
            wakeup.set()
        return controls

    async def set_limits(
        self,
        job_type: str,
        *,
        max_running: int | None = _UNSET,
        max_running_per_key: int | None = _UNSET,
        rate: RateLimit | tuple[int, float] | None = _UNSET,
    ) -> TypeControls:
        """Set (or with None, clear) the limits given; those not given keep their values.
        ``rate`` is ``(limit, period_seconds)`` or a ``RateLimit``."""
        values: dict[str, Any] = {}
        if max_running is not _UNSET:
            values["max_running"] = max_running
        if max_running_per_key is not _UNSET:
            values["max_running_per_key"] = max_running_per_key
        if rate is not _UNSET:
            values["rate"] = rate if rate is None or isinstance(rate, RateLimit) else RateLimit(
                limit=rate[0], period=rate[1]
            )
        try:
            # The HTTP body's own validation (limits, ranges), for Python callers too.
            update = msgspec.convert(msgspec.to_builtins(values), TypeControlsUpdate)
        except msgspec.ValidationError as exc:
            raise ValidationFailed(str(exc), _field_of(exc)) from None
        return await self.set_type_controls(job_type, update)

    async def pause(self, job_type: str) -> TypeControls:
        """Stop claiming jobs of the type, in every process, until ``resume``; running jobs
        finish. The pause is stored: it survives restarts."""
        return await self.set_type_controls(job_type, TypeControlsUpdate(paused=True))

    async def resume(self, job_type: str) -> TypeControls:
        return await self.set_type_controls(job_type, TypeControlsUpdate(paused=False))

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
        traceback: str | None = None,
        retry_delay: float | None = None,
    ) -> Job:
        """Record a failed attempt: retried after a backoff while attempts remain, else failed.
        ``traceback`` is kept with the attempt (cut to ``MAX_TRACEBACK_CHARS``); ``retry_delay``
        replaces the settings' base of the backoff (a typed task's own)."""
        base = self.settings.retry_base_delay if retry_delay is None else retry_delay
        retry_at = time.time() + backoff_seconds(attempts, base)
        return await self.store.fail(
            job_id,
            claim_token,
            error=error,
            retry=retry,
            retry_at=retry_at,
            message=message,
            traceback=bounded_traceback(traceback),
        )

    async def attempts(self, job_id: str) -> AttemptList:
        """The job's attempts, oldest first: those that ended badly (stored), then the running
        or completed one (read from the job itself)."""
        job = await self.require_job(job_id)
        attempts = await self.store.ended_attempts(job_id)
        numbered = {(a.attempt, a.started_at) for a in attempts}
        if job.status in ACTIVE_STATUSES or job.status is JobStatus.COMPLETED:
            current = Attempt(
                attempt=job.attempts,
                worker_id=job.worker_id,
                started_at=job.attempt_started_at,
                ended_at=job.completed_at,
                outcome="completed" if job.status is JobStatus.COMPLETED else "running",
            )
            if (current.attempt, current.started_at) not in numbered:
                attempts.append(current)
        return AttemptList(job_id=job_id, attempts=attempts)

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

    # -- periodic jobs (jobqueue.scheduler makes their jobs) --------------------------------------

    async def put_schedule(self, name: str, spec: ScheduleSpec, *, source: str = "api") -> tuple[Schedule, bool]:
        """Create or replace the schedule ``name``; returns it and whether it is new.

        ``ValidationFailed`` names the field of a bad definition. A replacement that ticks at the
        same instants keeps its next tick; any other starts at the next tick from now.
        """
        check_schedule_name(name)
        check_spec(spec)
        if spec.max_attempts is None:
            spec = msgspec.structs.replace(spec, max_attempts=self.settings.default_max_attempts)
        return await self.store.put_schedule(
            name, spec, source=source, next_run_at=next_tick(spec, time.time())
        )

    async def declare_schedules(self, schedules: Mapping[str, ScheduleSpec]) -> None:
        """Write the schedules declared in code (``Registry.schedule``), as a worker starts."""
        for name, spec in schedules.items():
            await self.put_schedule(name, spec, source="code")

    async def list_schedules(self) -> list[Schedule]:
        return await self.store.list_schedules()

    async def require_schedule(self, name: str) -> Schedule:
        schedule = await self.store.get_schedule(name)
        if schedule is None:
            raise ScheduleNotFound(name)
        return schedule

    async def delete_schedule(self, name: str) -> None:
        """Delete a schedule; the jobs it made stay. A schedule declared in code comes back
        when a worker declaring it starts."""
        if not await self.store.delete_schedule(name):
            raise ScheduleNotFound(name)

    async def pause_schedule(self, name: str) -> Schedule:
        """Stop making jobs for the schedule (in every process) until it is resumed."""
        schedule = await self.store.set_schedule_paused(name, True, None)
        if schedule is None:
            raise ScheduleNotFound(name)
        return schedule

    async def resume_schedule(self, name: str) -> Schedule:
        """Make jobs again from the next future tick: ticks that fell in the pause get none."""
        current = await self.require_schedule(name)
        schedule = await self.store.set_schedule_paused(name, False, next_tick(current, time.time()))
        if schedule is None:
            raise ScheduleNotFound(name)
        return schedule

    async def run_schedule(self, name: str) -> Job:
        """Queue one job of the schedule now, besides its ticks (which stay as they are)."""
        schedule = await self.require_schedule(name)
        job, _ = await self.create_job(
            schedule.job_type,
            schedule.request_data,
            schedule.priority,
            max_attempts=schedule.max_attempts,
            timeout=schedule.timeout,
        )
        return job

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

    async def create_jobs(
        self, items: Sequence[JobCreate], *, atomic: bool = False, trace_context: dict[str, str] | None = None
    ) -> list[BatchOutcome]:
        """Queue a batch of jobs in one transaction; one outcome per item, in order: the job and
        whether it is new, or the error refusing it. With ``atomic`` any refused item raises
        ``BatchRefused`` (listing them) and nothing is stored."""
        checked: list[NewJob] = []
        positions: list[int] = []
        errors: list[tuple[int, JobQueueError]] = []
        for index, item in enumerate(items):
            try:
                _batchable(item)
                checked.append(
                    self._new_job(
                        item.job_type, item.request_data, item.priority, item.max_attempts,
                        item.timeout, item.run_at, item.delay, item.idempotency_key,
                        item.concurrency_key, trace_context=trace_context,
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


def _batchable(item: JobCreate) -> None:
    """Dependencies and unique keys decide a job's fate from other jobs' rows, locked one job at
    a time; a batch item with them is refused (enqueue it with ``POST /api/jobs``)."""
    for field in ("depends_on", "on_dependency_failure", "unique_key", "debounce"):
        if getattr(item, field) is not None:
            raise ValidationFailed(
                f"{field} is not taken in a batch: enqueue jobs with dependencies or a unique key "
                "one by one (POST /api/jobs)",
                field,
            )


def _bulk_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_BULK_JOBS:
        raise ValidationFailed(f"limit must be between 1 and {MAX_BULK_JOBS}", "limit")
    return limit


def bounded_traceback(text: str | None) -> str | None:
    """``text`` cut to ``MAX_TRACEBACK_CHARS``: its first line, a marker, then its end."""
    if text is None or len(text) <= MAX_TRACEBACK_CHARS:
        return text
    first, _, _ = text.partition("\n")
    first = first[:200]
    marker = f"\n  ... {len(text) - MAX_TRACEBACK_CHARS} characters cut ...\n"
    return first + marker + text[-(MAX_TRACEBACK_CHARS - len(first) - len(marker)) :]


def deduplicated(job: Job, created: bool, idempotency_key: str | None, unique_key: str | None) -> bool:
    """Whether ``create_job`` answered the job already holding ``unique_key`` (rather than a new
    job, or the job of an idempotent replay, which carries the request's idempotency key)."""
    return not created and unique_key is not None and (idempotency_key is None or job.idempotency_key != idempotency_key)


def _dependencies(depends_on: Sequence[str] | None, on_failure: str | None) -> Dependencies | None:
    if depends_on is None:
        if on_failure is not None:
            raise ValidationFailed("on_dependency_failure needs depends_on", "on_dependency_failure")
        return None
    if isinstance(depends_on, str):
        depends_on = [depends_on]  # one id, not its characters
    ids = list(dict.fromkeys(depends_on))
    if not 1 <= len(ids) <= MAX_DEPENDENCIES:
        raise ValidationFailed(f"depends_on must name 1 to {MAX_DEPENDENCIES} jobs", "depends_on")
    if any(not isinstance(job_id, str) or not 1 <= len(job_id) <= 64 for job_id in ids):
        raise ValidationFailed("depends_on must hold job ids (1 to 64 characters)", "depends_on")
    policy = on_failure or "cancel"
    if policy not in ("cancel", "run"):
        raise ValidationFailed(
            f"on_dependency_failure must be cancel or run, got {policy!r}", "on_dependency_failure"
        )
    return Dependencies(ids, policy)


def _unique_key(unique_key: str | None, debounce: float | None, scheduled: bool) -> UniqueKey | None:
    if debounce is not None:
        if unique_key is None:
            raise ValidationFailed("debounce needs unique_key (the key a repeat is recognised by)", "debounce")
        if scheduled:
            raise ValidationFailed("debounce sets when the job runs: give it without run_at or delay", "debounce")
        if not 0 < debounce <= MAX_DEBOUNCE_SECONDS:
            raise ValidationFailed(f"debounce must be above 0 and at most {MAX_DEBOUNCE_SECONDS} seconds", "debounce")
    if unique_key is None:
        return None
    if not 1 <= len(unique_key) <= 200:
        raise ValidationFailed("unique_key must be 1 to 200 characters", "unique_key")
    return UniqueKey(unique_key, debounce is not None)


def _status(value: JobStatus | str) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise ValidationFailed(f"unknown status {value!r}; expected one of: {known}", "status") from None


def _check_job_type(job_type: str) -> str:
    if not isinstance(job_type, str) or not 1 <= len(job_type) <= 100:
        raise ValidationFailed("job_type must be 1 to 100 characters", "job_type")
    return job_type


def _field_of(exc: msgspec.ValidationError) -> str | None:
    """The field a msgspec validation error names (``... - at `$.rate.limit` ``)."""
    text = str(exc)
    if "`$." not in text:
        return None
    return text.split("`$.", 1)[1].split("`", 1)[0].split(".", 1)[0].split("[", 1)[0]


def _check_progress(progress: int) -> None:
    if not isinstance(progress, int) or not 0 <= progress <= 100:
        raise ValidationFailed("progress must be an integer from 0 to 100", "progress")



def check_schedule_name(name: str) -> None:
    """The rule of ``models.ScheduleName``, for names that do not come through the API."""
    try:
        msgspec.convert(name, ScheduleName)
    except msgspec.ValidationError:
        raise ValidationFailed(
            "a schedule name is 1 to 100 letters, digits and _.:@- starting with a letter or digit", "name"
        ) from None
