"""The storage contract: every operation jobqueue needs from a database, in domain types only.

``SQLiteStore`` and ``PostgresStore`` implement it; the service, the event hub, the metrics and
the CLI know nothing else. Each write commits before it returns, records one ``JobEvent`` per
visible change in the same transaction, and hands the committed events to the listeners added
with ``add_listener``. Global event ids increase in commit order on every backend: a reader that
has seen id N has seen every event below N that will ever exist.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from jobqueue.errors import JobQueueError
from jobqueue.models import (
    ApiKey,
    ApiSession,
    Attempt,
    ClaimedJob,
    Job,
    JobEvent,
    JobStatus,
    JobUpdate,
    Schedule,
    ScheduleSpec,
    TypeControls,
    TypeControlsUpdate,
    TypeTimings,
    Worker,
)
from jobqueue.storage.rules import DataFilter, Dependencies, UniqueKey

#: Called with the events of each committed write, on the event loop, in commit order.
EventListener = Callable[[list[JobEvent]], None]


class NewJob(NamedTuple):
    """One job of a batch, as ``insert_job`` takes it (validated by the service)."""

    job_type: str
    request_data: Any
    priority: int
    max_attempts: int
    run_at: float | None
    timeout: float | None
    idempotency_key: str | None
    concurrency_key: str | None = None
    dependencies: Dependencies | None = None
    unique: UniqueKey | None = None
    trace_context: dict[str, str] | None = None


#: The outcome of one job of a batch: the job and whether it was created, or why it was refused.
BatchOutcome = tuple[Job, bool] | JobQueueError


class Store(Protocol):
    #: ``sqlite`` or ``postgresql``.
    backend: str

    def add_listener(self, listener: EventListener) -> None:
        """Hand the events of every write this process commits to ``listener``."""

    async def listen(self, on_signal: Callable[[], None]) -> bool:
        """Call ``on_signal()`` whenever another process may have committed events; False when
        this backend (or its configuration) has no such signal and readers must poll."""

    async def migrate(self) -> list[str]:
        """Apply the pending migrations; returns the names of those applied."""

    # -- creating and reading -----------------------------------------------------------------

    async def insert_job(
        self,
        *,
        job_type: str,
        request_data: Any,
        priority: int,
        max_attempts: int,
        run_at: float | None,
        timeout: float | None,
        idempotency_key: str | None,
        concurrency_key: str | None = None,
        dependencies: Dependencies | None = None,
        unique: UniqueKey | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> tuple[Job, bool]:
        """Store a new job; returns it and whether it was created (False: an idempotent replay,
        or the unfinished job holding ``unique``'s key, which a debounced request updated).

        With ``dependencies`` (all must exist, else ``ValidationFailed`` naming the unknown
        ones) the job starts ``blocked`` until they finished, and each of them is flagged
        ``has_dependents``; finishing a flagged job, by any path, settles its dependents in
        the same transaction (see ``rules.initial_status`` and the stores' ``_record``)."""

    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(
        self,
        *,
        statuses: Sequence[JobStatus] | None,
        job_type: str | None,
        worker_id: str | None,
        id_prefix: str | None,
        data: Sequence[DataFilter],
        limit: int,
        offset: int,
    ) -> tuple[list[Job], int]:
        """A page of jobs, newest first, and how many match in all; ``id_prefix`` and each of
        ``data`` (checked by ``rules.check_id_prefix`` and ``rules.data_filter``) narrow it."""

    async def count_by_status(self, job_type: str | None) -> dict[str, int]: ...

    async def waiting_summary(self, job_type: str | None) -> tuple[int, int, datetime | None]:
        """Waiting jobs due now, scheduled for later, and the oldest creation time among them."""

    async def recent_timings(self, job_type: str | None, since: float) -> tuple[float | None, float | None]:
        """Mean wait and run seconds of jobs finished since ``since``."""

    async def timings(self, since: float, sample: int, percentiles: Sequence[float]) -> list[TypeTimings]:
        """Per job type, by name: the ``percentiles`` (fractions, in order) of the wait and run
        seconds of the ``sample`` jobs finished most recently since ``since`` that had started."""

    async def ping(self) -> None:
        """Raise ``DatabaseError`` unless the database answers, is still the one opened, and a
        write could commit now (not read-only, disk not full)."""

    async def cancel_requested(self, worker_id: str) -> list[str]:
        """Ids of the jobs ``worker_id`` holds whose cancel was requested."""

    # -- unfenced changes (operators, the seed's simple workers) ------------------------------

    async def update_job(
        self, job_id: str, update: JobUpdate, fields: set[str], lease: float, *, force: bool = False
    ) -> Job:
        """Apply ``rules.plan_update`` to the job read in the same write transaction: a held job
        changes only with its claim token, or with ``force``, which fences its holder out."""

    async def cancel(self, job_id: str, message: str | None) -> Job:
        """Cancel a waiting or blocked job at once, or ask the holder of a running one to stop."""

    async def retry(self, job_id: str) -> Job: ...

    async def delete(self, job_id: str) -> None: ...

    async def prune(self, status: JobStatus, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` jobs in ``status`` finished before ``cutoff``, with their events."""

    async def reclaim_space(self) -> int:
        """Give space freed by pruning back, a slice at a time; returns how much work is left."""

    # -- events -------------------------------------------------------------------------------

    async def job_events_after(self, job_id: str, after: int, limit: int = 1000) -> list[JobEvent]: ...

    async def unseen_events_after(
        self, after: int, seen: Container[int], limit: int = 1000, *, new_work_only: bool = False
    ) -> tuple[list[JobEvent], int, int]:
        """Events after a global id whose ids are not in ``seen``, the last id read, and how
        many ids were read (the poll: most events are this process's own, already delivered).

        ``new_work_only``: of the unseen events, fetch only those that put a job in the queue
        (``JobEvent.signals_new_work``); every id is still read. A process whose only listener
        is its worker pool's wake-up does not fetch and decode the rest."""

    async def events_after(self, after: int, limit: int = 1000) -> list[JobEvent]: ...

    async def last_event_id(self) -> int: ...

    # -- claiming and the holder's operations (fenced by the claim token) ----------------------

    async def claim(
        self, *, worker_id: str, job_types: Sequence[str] | None, limit: int, lease: float
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` due jobs in claim order (best priority, then oldest), within the
        flow controls of their types (``job_type_controls``): none of a paused type, and of a
        limited type only what its limits allow, counted atomically with the claim against
        every other process's claims."""

    async def heartbeat(self, job_id: str, token: str, lease: float) -> bool:
        """Extend the lease; True when a cancel was requested."""

    async def report_progress(
        self,
        job_id: str,
        token: str,
        *,
        progress: int,
        message: str | None,
        status: JobStatus | None,
        lease: float,
    ) -> Job: ...

    async def complete(self, job_id: str, token: str, result_data: Any, message: str | None) -> Job:
        """Finish a held job; a repeat of the completion that finished it (same token, same
        result) answers the job again, anything else refused is ``LeaseLost``."""

    async def fail(
        self,
        job_id: str,
        token: str,
        *,
        error: str,
        retry: bool,
        retry_at: float,
        message: str | None,
        traceback: str | None = None,
    ) -> Job:
        """End the held attempt as failed; its error and traceback join the attempt history."""

    async def ended_attempts(self, job_id: str, limit: int = 100) -> list[Attempt]:
        """The job's attempts that ended other than by completing, oldest first (the last
        ``limit`` of them)."""

    async def acknowledge_cancel(self, job_id: str, token: str, message: str | None) -> Job: ...

    async def release(self, job_id: str, token: str, message: str | None) -> Job: ...

    async def reap_expired(self, limit: int = 500) -> list[Job]:
        """Requeue (or fail, or cancel) jobs whose lease lapsed; returns them."""

    # -- flow control per job type --------------------------------------------------------------

    async def get_type_controls(self, job_type: str) -> TypeControls:
        """The type's controls (none when never set), running jobs, counts and next start."""

    async def list_type_controls(self) -> list[TypeControls]:
        """Every type with controls or with jobs, by name."""

    async def set_type_controls(self, job_type: str, update: TypeControlsUpdate) -> TypeControls:
        """Change the controls ``update`` sends (the others keep their values); every process's
        next claim obeys them."""

    # -- API keys and browser sessions (jobqueue.keys decides what they mean) -----------------

    async def insert_api_key(
        self, *, key_id: str, name: str, key_hash: str, scopes: Sequence[str], job_types: Sequence[str] | None
    ) -> ApiKey:
        """Store a new key (its hash only); ``ApiKeyExists`` when a key in use has the name."""

    async def get_api_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key with this id and its stored hash, revoked or not."""

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def any_api_key(self) -> bool:
        """Whether any key was ever created (a revoked one counts)."""

    async def revoke_api_key(self, key: str) -> ApiKey:
        """Revoke the key with this id, else the key in use with this name, and end its
        sessions; ``ApiKeyNotFound`` when there is none."""

    async def touch_api_key(self, key_id: str, interval: float) -> None:
        """Set last_used_at to now unless it was set within ``interval`` seconds."""

    async def insert_session(
        self, *, token_hash: str, key_id: str | None, bootstrap_proof: str | None, expires_at: float
    ) -> None:
        """Store a browser session (and delete the expired ones)."""

    async def get_session(self, token_hash: str) -> ApiSession | None:
        """The unexpired session with this token hash, with its key."""

    async def delete_session(self, token_hash: str) -> None: ...

    # -- worker pools you can see ---------------------------------------------------------------

    async def register_worker(
        self, *, worker_id: str, host: str, pid: int, job_types: Sequence[str], concurrency: int, ttl: float
    ) -> Worker:
        """Register a pool, or renew its registration for ``ttl`` more seconds (its heartbeat)."""

    async def unregister_worker(self, worker_id: str) -> bool:
        """Delete a pool's registration; False when there was none."""

    async def delete_lapsed_workers(self) -> int:
        """Delete the registrations whose heartbeat lapsed; returns how many."""

    async def live_workers(self, held_ids_shown: int) -> list[Worker]:
        """The pools whose registration has not lapsed, with the jobs each holds."""

    async def live_worker_types(self) -> set[str]:
        """The job types some live pool serves."""

    async def waiting_types(self) -> set[str]:
        """The job types that have waiting jobs."""

    # -- bulk operations --------------------------------------------------------------------------

    async def insert_jobs(self, items: Sequence[NewJob], *, atomic: bool) -> list[BatchOutcome]:
        """Store a batch of jobs in one transaction, one outcome per item in order. With
        ``atomic`` any refused item (an idempotency key reused for another request) raises
        ``BatchRefused`` and nothing is stored."""

    async def retry_failed(self, job_type: str, limit: int) -> tuple[list[str], bool]:
        """Retry up to ``limit`` failed jobs of a type; their ids, and whether more remain."""

    async def cancel_waiting(self, job_type: str, limit: int, message: str) -> tuple[list[str], bool]:
        """Cancel up to ``limit`` waiting jobs of a type; their ids, and whether more remain."""

    async def purge(
        self, statuses: Sequence[JobStatus], job_type: str | None, before: float | None, limit: int
    ) -> tuple[list[str], bool]:
        """Delete up to ``limit`` finished jobs (with their events); their ids, and whether
        more match."""

    # -- periodic jobs (jobqueue.scheduler decides when a schedule ticks) ----------------------

    async def put_schedule(
        self, name: str, spec: ScheduleSpec, *, source: str, next_run_at: float
    ) -> tuple[Schedule, bool]:
        """Create or replace a schedule; returns it and whether it was created. A replacement
        with the same timing (cron, interval, zone) keeps its ``next_run_at``; a pause stays."""

    async def get_schedule(self, name: str) -> Schedule | None: ...

    async def list_schedules(self) -> list[Schedule]: ...

    async def delete_schedule(self, name: str) -> bool:
        """Delete a schedule; False when there was none."""

    async def set_schedule_paused(self, name: str, paused: bool, next_run_at: float | None) -> Schedule | None:
        """Pause or resume (``next_run_at``: the next tick, None keeps it); None when there is none."""

    async def due_schedules(self, until: float, limit: int) -> list[Schedule]:
        """Unpaused schedules whose next tick is at or before ``until``, soonest first."""

    async def fire_schedule(
        self,
        name: str,
        due: datetime,
        next_run_at: float,
        *,
        job_type: str,
        request_data: Any,
        priority: int,
        max_attempts: int,
        timeout: float | None,
        idempotency_key: str,
    ) -> tuple[Job, bool] | None:
        """In one write transaction: move the schedule's ``next_run_at`` from ``due`` (as read)
        to ``next_run_at`` (compare-and-set) and, when it moved, insert the tick's job, as
        ``insert_job`` does; returns the job and whether it was created (False: a job already
        held the key, and is taken as the tick's job). None when another scheduler moved it
        first."""

    async def skip_schedule_ticks(self, name: str, due: datetime, next_run_at: float) -> bool:
        """The compare-and-set of ``fire_schedule`` without a job; False when it lost."""
