"""Job storage in one SQLite file: the ``Store`` contract in SQLite's SQL.

Queries live in ``queries.sql`` next to this module. Writes run through ``Database.write`` (one
writer thread, group commit) as plain functions executed in that thread; a method that must
read before it writes does both inside one write op, so the decision and the change happen
under the same lock. What a change means (allowed moves, event kinds, refusals) is decided in
``jobqueue.storage.rules``.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Container, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from jobqueue.errors import ApiKeyExists, ApiKeyNotFound, BatchRefused, JobNotFound, JobQueueError, LeaseLost
from jobqueue.models import (
    TERMINAL_EVENT_KINDS,
    ApiKey,
    Attempt,
    ApiSession,
    ClaimedJob,
    EventKind,
    Job,
    JobEvent,
    JobStatus,
    JobUpdate,
    KeyScope,
    Worker,
    MissedTicks,
    Percentiles,
    Schedule,
    ScheduleSpec,
    TypeControls,
    TypeControlsUpdate,
    TypeTimings,
)
from jobqueue.settings import Settings
from jobqueue.storage import flow, rules
from jobqueue.storage.base import BatchOutcome, EventListener, NewJob
from jobqueue.storage.migrate import apply_migrations
from jobqueue.storage.sqlite.connection import QUERIES, Database, WriteConnection

T = TypeVar("T")
#: An event as recorded in the writer thread: the job_events row (see insert_event), turned into
#: a ``JobEvent`` on the event loop once its transaction committed.
EventRow = tuple[Any, ...]
#: A write operation: runs on the writer connection and appends the events it recorded.
EventedOp = Callable[[WriteConnection, list[EventRow]], T]


_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else _json_encode(value).decode()


def job_from_row(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        status=JobStatus(row["status"]),
        progress=row["progress"],
        job_type=row["job_type"],
        priority=row["priority"],
        request_data=None if row["request_data"] is None else _json_decode(row["request_data"]),
        result_data=None if row["result_data"] is None else _json_decode(row["result_data"]),
        message=row["message"],
        error=row["error"],
        created_at=_ts(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_ts(row["updated_at"]),  # type: ignore[arg-type]
        started_at=_ts(row["started_at"]),
        completed_at=_ts(row["completed_at"]),
        worker_id=row["worker_id"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=_ts(row["run_at"]),  # type: ignore[arg-type]
        timeout=row["timeout"],
        lease_expires_at=_ts(row["lease_expires_at"]),
        cancel_requested=bool(row["cancel_requested"]),
        idempotency_key=row["idempotency_key"],
        event_seq=row["event_seq"],
        concurrency_key=row["concurrency_key"],
        attempt_started_at=_ts(row["attempt_started_at"]),
        depends_on=None if row["depends_on"] is None else _json_decode(row["depends_on"]),
        on_dependency_failure=row["on_dependency_failure"],
        unique_key=row["unique_key"],
        trace_context=None if row["trace_context"] is None else _json_decode(row["trace_context"]),
    )


def attempt_from_row(row: sqlite3.Row) -> Attempt:
    return Attempt(
        attempt=row["attempt"],
        worker_id=row["worker_id"],
        started_at=_ts(row["started_at"]),
        ended_at=_ts(row["ended_at"]),
        outcome=row["outcome"],
        error=row["error"],
        traceback=row["traceback"],
    )


def limits_from_row(row: sqlite3.Row) -> flow.Limits:
    return flow.Limits(
        job_type=row["job_type"],
        paused=bool(row["paused"]),
        max_running=row["max_running"],
        max_running_per_key=row["max_running_per_key"],
        rate_limit=row["rate_limit"],
        rate_period=row["rate_period"],
    )


def api_key_from_row(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        scopes=[KeyScope(s) for s in _json_decode(row["scopes"])],
        job_types=None if row["job_types"] is None else _json_decode(row["job_types"]),
        created_at=_ts(row["created_at"]),  # type: ignore[arg-type]
        last_used_at=_ts(row["last_used_at"]),
        revoked_at=_ts(row["revoked_at"]),
    )


def worker_from_row(row: sqlite3.Row, held: int, held_ids: list[str]) -> Worker:
    return Worker(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        job_types=_json_decode(row["job_types"]),
        concurrency=row["concurrency"],
        started_at=_ts(row["started_at"]),  # type: ignore[arg-type]
        heartbeat_at=_ts(row["heartbeat_at"]),  # type: ignore[arg-type]
        expires_at=_ts(row["expires_at"]),  # type: ignore[arg-type]
        held_jobs=held,
        held_job_ids=held_ids,
    )


def event_from_row(row: sqlite3.Row) -> JobEvent:
    return _event_from_values(
        (row["id"], row["job_id"], row["seq"], row["job_type"], row["kind"],
         row["status"], row["progress"], row["message"], row["data"], row["at"])
    )


class _PendingRows:
    """The rows one write transaction inserts just before it commits: new jobs, then events.

    Inserting them together (one ``executemany`` each instead of a statement per change) is
    what lets a transaction carry hundreds of enqueues: inserting events one by one took as long
    as all other work of claiming and completing.
    """

    __slots__ = ("next_event_id", "jobs", "events")

    def __init__(self, next_event_id: int) -> None:
        self.next_event_id = next_event_id
        self.jobs: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []

    def insert(self, conn: sqlite3.Connection) -> None:
        if self.jobs:
            conn.executemany(QUERIES["insert_new_jobs"], self.jobs)
        conn.executemany(QUERIES["insert_event"], self.events)


def _pending_rows(conn: WriteConnection) -> _PendingRows:
    pending: _PendingRows | None = conn.scratch.get("rows")
    if pending is None:
        # Event ids come from the table's AUTOINCREMENT sequence, read once per transaction
        # under the write lock.
        first = conn.fetch_all(QUERIES["next_event_id"])
        pending = conn.scratch["rows"] = _PendingRows(first[0][0])
        conn.before_commit(pending.insert)
    return pending


def claimed_from_row(row: sqlite3.Row) -> ClaimedJob:
    return ClaimedJob(job=job_from_row(row), claim_token=row["claim_token"])


def _add_event(
    pending: _PendingRows,
    events: list[EventRow],
    row: sqlite3.Row | Job,
    kind: EventKind,
    data: str | None = None,
    at: float | None = None,
) -> None:
    """Queue the event of the change that produced ``row`` (``data``: JSON text or None; ``at``:
    for a ``Job`` built in Python, its raw updated_at, which the datetime keeps only to the µs).

    Only raw values here: this runs in the writer thread, where every microsecond of Python
    holds up the transaction; the ``JobEvent`` objects are built on the loop after COMMIT.
    """
    if isinstance(row, Job):
        assert at is not None, "a Job built in Python comes with its raw updated_at"
        event = (
            pending.next_event_id, row.id, row.event_seq, row.job_type, kind.value,
            row.status.value, row.progress, row.message, data, at,
        )
    else:
        event = (
            pending.next_event_id, row["id"], row["event_seq"], row["job_type"], kind.value,
            row["status"], row["progress"], row["message"], data, row["updated_at"],
        )
    pending.next_event_id += 1
    pending.events.append(event)
    events.append(event)


def _event_from_values(row: EventRow) -> JobEvent:
    """A ``JobEvent`` from the values of its job_events row, in the table's column order."""
    id_, job_id, seq, job_type, kind, status, progress, message, data, at = row
    return JobEvent(
        id=id_,
        seq=seq,
        job_id=job_id,
        job_type=job_type,
        kind=EventKind(kind),
        status=JobStatus(status),
        progress=progress,
        message=message,
        data=None if data is None else _json_decode(data),
        at=datetime.fromtimestamp(at, UTC),
    )


class SQLiteStore:
    """Job storage in one SQLite file.

    Every change of a job records a ``JobEvent`` in the same transaction; once that transaction
    has committed, the events are handed to the listeners (the event hub publishes them).
    """

    backend = "sqlite"

    def __init__(self, db: Database) -> None:
        self.db = db
        self._listeners: list[EventListener] = []

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[SQLiteStore]:
        db = Database(settings.database_path, synchronous=settings.synchronous)
        await db.open()
        try:
            yield cls(db)
        finally:
            await db.close()

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    async def listen(self, on_signal: Callable[[], None]) -> bool:
        # No cross-process signal in SQLite: other processes' events come from the poll.
        return False

    async def migrate(self) -> list[str]:
        return [m.name for m in await apply_migrations(self.db)]

    async def _write(self, op: EventedOp[T]) -> T:
        events: list[EventRow] = []

        def run(conn: WriteConnection) -> T:
            events.clear()  # a batch retried alone runs the op again from scratch
            return op(conn, events)

        result = await self.db.write(run)
        if events and self._listeners:
            committed = [_event_from_values(e) for e in events]
            for listener in self._listeners:
                listener(committed)
        return result

    @staticmethod
    def _record(
        conn: WriteConnection,
        events: list[EventRow],
        row: sqlite3.Row,
        kind: EventKind,
        data: str | None = None,
    ) -> sqlite3.Row:
        """Record the event of the change that produced ``row``; returns the row.

        Ops return rows, decoded into jobs by the caller on the event loop: decoding in the
        writer thread took a quarter of its time when a pool claimed and completed jobs.

        Every change of a job passes here, so this is where a job that others depend on and
        that just finished settles them, in the same transaction, whichever path finished it.
        A job without dependents (nearly all) pays one column read for it.
        """
        _add_event(_pending_rows(conn), events, row, kind, data)
        if kind in TERMINAL_EVENT_KINDS and row["has_dependents"]:
            _settle_dependents(conn, events, row)
        return row

    # -- creating ---------------------------------------------------------------------------

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
        dependencies: rules.Dependencies | None = None,
        unique: rules.UniqueKey | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> tuple[Job, bool]:
        """Store a new job; returns it and whether it was created (False: an idempotent replay,
        or the unfinished job that holds ``unique``'s key)."""
        now = time.time()
        due = now if run_at is None else run_at
        if idempotency_key is None and dependencies is None and unique is None:
            return await self._insert_new_job(
                job_type, request_data, priority, max_attempts, now, due, timeout, concurrency_key, trace_context
            )
        params = self._keyed_job_params(
            job_type, request_data, priority, max_attempts, now, due, timeout, idempotency_key,
            concurrency_key, dependencies, unique, trace_context,
        )
        fingerprint = params["fingerprint"]
        encoded_request = params["request_data"]

        def op(conn: WriteConnection, events: list[EventRow]) -> tuple[sqlite3.Row, bool]:
            cancel_reason = None
            if dependencies is not None:
                ids = {"ids": params["depends_on"]}
                error = rules.unknown_dependencies(
                    dependencies.ids, {row[0] for row in conn.fetch_all(QUERIES["known_jobs"], ids)}
                )
                if error is not None:
                    raise error  # before anything is written
                statuses = {row[0]: row[1] for row in conn.fetch_all(QUERIES["mark_dependencies"], ids)}
                params["status"], cancel_reason = rules.initial_status(dependencies, statuses)
            row = conn.fetch_one(QUERIES["insert_job"], params)
            if row is not None:
                self._record(conn, events, row, EventKind.CREATED)
                if dependencies is not None:
                    conn.fetch_all(QUERIES["insert_dependencies"], params)
                if cancel_reason is not None:
                    row = conn.fetch_one(
                        QUERIES["cancel_blocked_job"], {"id": row["id"], "now": now, "reason": cancel_reason}
                    )
                    self._record(conn, events, row, EventKind.CANCELLED)
                return row, True
            if idempotency_key is not None:
                existing = conn.fetch_one(QUERIES["get_job_by_idempotency_key"], {"key": idempotency_key})
                if existing is not None:
                    rules.check_idempotent_replay(
                        idempotency_key, existing["id"], existing["idempotency_fingerprint"], fingerprint
                    )
                    return existing, False
            # The unfinished job holding the unique key (the write lock keeps it there).
            assert unique is not None
            if unique.debounced:
                debounced = conn.fetch_one(
                    QUERIES["debounce_job"],
                    {"key": unique.key, "request_data": encoded_request, "run_at": due, "now": now},
                )
                if debounced is not None:
                    return self._record(conn, events, debounced, EventKind.UPDATED), False
            existing = conn.fetch_one(QUERIES["get_unfinished_job_by_unique_key"], {"key": unique.key})
            assert existing is not None
            return existing, False

        row, created = await self._write(op)
        return job_from_row(row), created

    @staticmethod
    def _keyed_job_params(
        job_type: str,
        request_data: Any,
        priority: int,
        max_attempts: int,
        now: float,
        due: float,
        timeout: float | None,
        idempotency_key: str | None,
        concurrency_key: str | None = None,
        dependencies: rules.Dependencies | None = None,
        unique: rules.UniqueKey | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The ``insert_job`` parameters of a job that may conflict (an idempotency or unique
        key) or has dependencies."""
        fingerprint = None
        if idempotency_key is not None:
            fingerprint = rules.fingerprint(
                job_type, request_data, priority, max_attempts, timeout,
                concurrency_key=concurrency_key, extras=rules.create_extras(dependencies, unique),
            )
        return {
            "id": str(uuid.uuid4()),
            "job_type": job_type,
            "priority": priority,
            "request_data": _json_or_none(request_data),
            "now": now,
            "max_attempts": max_attempts,
            "run_at": due,
            "timeout": timeout,
            "idempotency_key": idempotency_key,
            "fingerprint": fingerprint,
            "concurrency_key": concurrency_key,
            "trace_context": _json_or_none(trace_context),
            **rules.option_columns(dependencies, unique),
        }

    def _insert_keyed(
        self, conn: WriteConnection, events: list[EventRow], params: dict[str, Any]
    ) -> tuple[sqlite3.Row, bool]:
        """Insert a job with an idempotency key (and its 'created' event); returns it and True,
        or the job that holds the key already and False."""
        row = conn.fetch_one(QUERIES["insert_job"], params)
        if row is not None:
            return self._record(conn, events, row, EventKind.CREATED), True
        existing = conn.fetch_one(QUERIES["get_job_by_idempotency_key"], {"key": params["idempotency_key"]})
        assert existing is not None  # the conflict that suppressed the insert is this row
        return existing, False

    async def _insert_new_job(
        self,
        job_type: str,
        request_data: Any,
        priority: int,
        max_attempts: int,
        now: float,
        due: float,
        timeout: float | None,
        concurrency_key: str | None,
        trace_context: dict[str, str] | None = None,
    ) -> tuple[Job, bool]:
        """A job without idempotency key: its row joins the transaction's one multi-row insert.

        Nothing can conflict, so the op runs no statement of its own and the job is built here
        from the values inserted (what ``RETURNING *`` would give, without decoding a row).
        """
        job, row = _new_job_row(job_type, request_data, priority, max_attempts, now, due, timeout, concurrency_key, trace_context)

        def op(conn: WriteConnection, events: list[EventRow]) -> tuple[Job, bool]:
            pending = _pending_rows(conn)
            pending.jobs.append(row)
            _add_event(pending, events, job, EventKind.CREATED, at=now)
            return job, True

        return await self._write(op)

    # -- reading ----------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        row = await self.db.fetch_one(QUERIES["get_job"], {"id": job_id})
        return None if row is None else job_from_row(row)

    async def list_jobs(
        self,
        *,
        statuses: Sequence[JobStatus] | None,
        job_type: str | None,
        worker_id: str | None,
        id_prefix: str | None,
        data: Sequence[rules.DataFilter],
        limit: int,
        offset: int,
    ) -> tuple[list[Job], int]:
        params = {
            "statuses": _json_encode([s.value for s in statuses]).decode() if statuses else None,
            "job_type": job_type,
            "worker_id": worker_id,
            "id_prefix": id_prefix,
            "id_prefix_end": rules.prefix_range_end(id_prefix) if id_prefix else None,
            "data": _json_encode([f._asdict() for f in data]).decode() if data else None,
            "limit": limit,
            "offset": offset,
        }
        list_query, count_query = (
            ("list_jobs_by_id_prefix", "count_jobs_by_id_prefix") if id_prefix else ("list_jobs", "count_jobs")
        )
        rows = await self.db.fetch_all(QUERIES[list_query], params)
        total = await self.db.fetch_one(QUERIES[count_query], params)
        return [job_from_row(r) for r in rows], total[0]

    async def count_by_status(self, job_type: str | None) -> dict[str, int]:
        rows = await self.db.fetch_all(QUERIES["count_by_status"], {"job_type": job_type})
        return {row[0]: row[1] for row in rows}

    async def waiting_summary(self, job_type: str | None) -> tuple[int, int, datetime | None]:
        row = await self.db.fetch_one(
            QUERIES["waiting_summary"], {"job_type": job_type, "now": time.time()}
        )
        return row[0], row[1], _ts(row[2])

    async def recent_timings(self, job_type: str | None, since: float) -> tuple[float | None, float | None]:
        row = await self.db.fetch_one(
            QUERIES["recent_timings"], {"job_type": job_type, "since": since}
        )
        return row[0], row[1]

    async def timings(self, since: float, sample: int, percentiles: Sequence[float]) -> list[TypeTimings]:
        rows = await self.db.fetch_all(
            QUERIES["timings"], {"since": since, "sample": sample, "percentiles": _json_encode(list(percentiles)).decode()}
        )
        by_type: dict[str, list[sqlite3.Row]] = {}
        for row in rows:
            by_type.setdefault(row["job_type"], []).append(row)
        return [
            TypeTimings(
                job_type=job_type,
                count=points[0]["count"],
                wait=Percentiles(*(point["wait"] for point in points)),
                run=Percentiles(*(point["run"] for point in points)),
            )
            for job_type, points in by_type.items()
        ]

    async def ping(self) -> None:
        await self.db.check_writable()
        await self.db.fetch_one(QUERIES["ping"])

    async def cancel_requested(self, worker_id: str) -> list[str]:
        rows = await self.db.fetch_all(QUERIES["cancel_requested_for_worker"], {"worker_id": worker_id})
        return [row[0] for row in rows]

    # -- changing (unfenced: the seed's API, for operators and simple workers) ----------------

    async def update_job(
        self, job_id: str, update: JobUpdate, fields: set[str], lease: float, *, force: bool = False
    ) -> Job:
        """Apply the ``fields`` of ``update``; the status and claim rules are checked under the
        write lock."""

        def op(conn: WriteConnection, events: list[EventRow]) -> sqlite3.Row:
            row = conn.fetch_one(QUERIES["get_job"], {"id": job_id})
            if row is None:
                raise JobNotFound(job_id)
            holder = rules.Holder(row["claim_token"], row["lease_expires_at"] is not None, row["worker_id"])
            plan = rules.plan_update(job_id, JobStatus(row["status"]), update, fields, holder, force=force)
            params = {
                "id": job_id,
                "now": time.time(),
                "lease": lease,
                "status": None if plan.status is None else plan.status.value,
                "progress": plan.progress,
                "message_set": "message" in fields,
                "message": update.message,
                "result_set": "result_data" in fields,
                "result_data": _json_or_none(update.result_data),
                "error_set": "error" in fields,
                "error": update.error,
                "worker_set": "worker_id" in fields,
                "worker_id": update.worker_id,
                "becomes_active": plan.becomes_active,
                "leaves_active": plan.leaves_active,
                "becomes_waiting": plan.becomes_waiting,
                "becomes_terminal": plan.becomes_terminal,
                "keeps_claim": plan.keeps_claim,
            }
            updated = conn.fetch_one(QUERIES["update_job"], params)
            assert updated is not None  # the row exists: we hold the write lock since reading it
            return self._record(conn, events, updated, plan.kind, _event_data(plan.kind, updated))

        return job_from_row(await self._write(op))

    async def cancel(self, job_id: str, message: str | None) -> Job:
        """Cancel a waiting or blocked job at once, or ask the holder of a running one to stop."""
        params = {"id": job_id, "now": time.time(), "message": message}

        def op(conn: WriteConnection, events: list[EventRow]) -> sqlite3.Row:
            row = conn.fetch_one(QUERIES["cancel_waiting_job"], params)
            if row is not None:
                return self._record(conn, events, row, EventKind.CANCELLED)
            row = conn.fetch_one(QUERIES["request_cancel"], params)
            if row is not None:
                return self._record(conn, events, row, EventKind.CANCEL_REQUESTED)
            raise rules.cannot_cancel(job_id, _status_of(conn, job_id))

        return job_from_row(await self._write(op))

    async def retry(self, job_id: str) -> Job:
        def op(conn: WriteConnection, events: list[EventRow]) -> sqlite3.Row:
            row = conn.fetch_one(QUERIES["retry_job"], {"id": job_id, "now": time.time()})
            if row is None:
                raise rules.cannot_retry(job_id, _status_of(conn, job_id))
            return self._record(conn, events, row, EventKind.RETRIED)

        return job_from_row(await self._write(op))

    async def delete(self, job_id: str) -> None:
        def op(conn: WriteConnection, events: list[EventRow]) -> None:
            if conn.fetch_one(QUERIES["delete_terminal_job"], {"id": job_id}) is None:
                raise rules.cannot_delete(job_id, _status_of(conn, job_id))

        await self._write(op)

    async def prune(self, status: JobStatus, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` jobs in ``status`` finished before ``cutoff`` (with their events)."""
        params = {"status": status.value, "cutoff": cutoff, "limit": limit}

        def op(conn: WriteConnection, events: list[EventRow]) -> int:
            return len(conn.fetch_all(QUERIES["prune_jobs"], params))

        return await self._write(op)

    async def reclaim_space(self, max_pages: int = 2000) -> int:
        """Hand up to ``max_pages`` pages freed by pruning back to the file system (the file
        shrinks at the next checkpoint); returns how many free pages remain."""

        def op(conn: WriteConnection, events: list[EventRow]) -> int:
            free = int(conn.fetch_all(QUERIES["freelist_count"])[0][0])
            # The pragma has no result columns, so Python's sqlite3 steps it only once: one page
            # per execute (fetching its rows does not run it further).
            for _ in range(min(free, max_pages)):
                conn.fetch_all(QUERIES["incremental_vacuum"])
            return max(free - max_pages, 0)

        return await self._write(op)

    # -- events -------------------------------------------------------------------------------

    async def job_events_after(self, job_id: str, after: int, limit: int = 1000) -> list[JobEvent]:
        rows = await self.db.fetch_all(
            QUERIES["job_events_after"], {"job_id": job_id, "after": after, "limit": limit}
        )
        return [event_from_row(r) for r in rows]

    async def unseen_events_after(
        self, after: int, seen: Container[int], limit: int = 1000, *, new_work_only: bool = False
    ) -> tuple[list[JobEvent], int, int]:
        """Events after a global id, reading only those whose id is not in ``seen``.

        Returns the new events, the last id read and how many ids were read. A process's own
        events are already delivered when its poll comes across them: only their ids are read
        (one integer each, not a ten-column row), and the rest are fetched by id.
        """
        rows = await self.db.fetch_all(QUERIES["event_ids_after"], {"after": after, "limit": limit})
        ids = [row[0] for row in rows]
        last = ids[-1] if ids else after
        unseen = [i for i in ids if i not in seen]
        if not unseen:
            return [], last, len(ids)
        query = QUERIES["new_work_events_by_ids" if new_work_only else "events_by_ids"]
        rows = await self.db.fetch_all(query, {"ids": _json_encode(unseen).decode()})
        return [event_from_row(r) for r in rows], last, len(ids)

    async def events_after(self, after: int, limit: int = 1000) -> list[JobEvent]:
        rows = await self.db.fetch_all(QUERIES["events_after"], {"after": after, "limit": limit})
        return [event_from_row(r) for r in rows]

    async def last_event_id(self) -> int:
        row = await self.db.fetch_one(QUERIES["last_event_id"])
        return int(row[0])

    # -- claiming and the holder's operations (fenced by the claim token) ----------------------

    async def claim(
        self, *, worker_id: str, job_types: Sequence[str] | None, limit: int, lease: float
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` due jobs; best priority, then oldest, first.

        Flow control (``job_type_controls``) is read first in the same write op: one primary-key
        lookup per type, and a type without a row costs nothing more. Paused and limited types
        then go through ``_claim_controlled``, which counts what their limits count under the
        same write lock as the claim, so the count cannot go stale before the claim commits.

        Without types, one statement walks ``jobs_claim`` in claim order; with one type (a
        worker's usual claim), one statement walks that type's range of ``jobs_claim_by_type``,
        so a backlog of other types is never read (walking the global order past 100,000
        foreign jobs took ~26 ms a claim, holding the write lock). With several types, each is
        one arm on its own range; the arms' candidates are merged in claim order and claimed by
        rowid in one statement. SQLite has no LATERAL join to put the arms into the claim
        statement itself; all of it runs in one write op, under the write lock, so it is just
        as atomic.
        """
        now = time.time()
        params: dict[str, Any] = {"worker_id": worker_id, "now": now, "lease": lease, "limit": limit}
        types = None if job_types is None else list(dict.fromkeys(job_types))

        def op(conn: WriteConnection, events: list[EventRow]) -> list[sqlite3.Row]:
            controls = _active_controls(conn, types)
            if controls:
                rows = _claim_controlled(conn, controls, types, params)
            elif types is None:
                rows = conn.fetch_all(QUERIES["claim_jobs"], params)
            elif len(types) == 1:
                rows = conn.fetch_all(QUERIES["claim_jobs_of_type"], {**params, "job_type": types[0]})
            else:
                candidates: list[sqlite3.Row] = []
                for job_type in types:
                    candidates += conn.fetch_all(
                        QUERIES["claim_candidates_of_type"],
                        {"job_type": job_type, "now": now, "limit": limit},
                    )
                if not candidates:
                    return []
                candidates.sort(key=lambda c: (-c["priority"], c["created_at"]))
                rowids = [c["rowid"] for c in candidates[:limit]]
                rows = conn.fetch_all(
                    QUERIES["claim_jobs_by_rowid"], {**params, "rowids": _json_encode(rowids).decode()}
                )
            for row in rows:
                self._record(conn, events, row, EventKind.STATUS)
            return rows

        claimed = [claimed_from_row(row) for row in await self._write(op)]
        # RETURNING does not follow the subquery's ORDER BY; hand jobs out in claim order.
        claimed.sort(key=lambda c: (-c.job.priority, c.job.created_at))
        return claimed

    async def _fenced(
        self, query: str, job_id: str, token: str, params: dict[str, Any], kind: EventKind
    ) -> Job:
        params = {"id": job_id, "token": token, "now": time.time(), **params}

        def op(conn: WriteConnection, events: list[EventRow]) -> sqlite3.Row:
            row = conn.fetch_one(QUERIES[query], params)
            if row is None:
                raise self._refusal(conn, job_id, token)
            actual = rules.fenced_kind(row["status"], kind)
            return self._record(conn, events, row, actual, _event_data(actual, row))

        return job_from_row(await self._write(op))

    @staticmethod
    def _refusal(conn: WriteConnection, job_id: str, token: str) -> Exception:
        row = conn.fetch_one(QUERIES["get_job"], {"id": job_id})
        if row is None:
            return JobNotFound(job_id)
        return rules.lease_lost(
            job_id,
            row["status"],
            row["claim_token"],
            row["lease_expires_at"] is not None,
            row["worker_id"],
            token,
        )

    async def heartbeat(self, job_id: str, token: str, lease: float) -> bool:
        """Extend the lease (no event: nothing visible changed); True when a cancel was requested."""
        params = {"id": job_id, "token": token, "now": time.time(), "lease": lease}

        def op(conn: WriteConnection, events: list[EventRow]) -> bool:
            row = conn.fetch_one(QUERIES["heartbeat"], params)
            if row is None:
                raise self._refusal(conn, job_id, token)
            return bool(row[0])

        return await self._write(op)

    async def report_progress(
        self,
        job_id: str,
        token: str,
        *,
        progress: int,
        message: str | None,
        status: JobStatus | None,
        lease: float,
    ) -> Job:
        return await self._fenced(
            "report_progress",
            job_id,
            token,
            {
                "progress": progress,
                "message": message,
                "status": None if status is None else status.value,
                "lease": lease,
            },
            EventKind.PROGRESS if status is None else EventKind.STATUS,
        )

    async def complete(self, job_id: str, token: str, result_data: Any, message: str | None) -> Job:
        try:
            return await self._fenced(
                "complete_job",
                job_id,
                token,
                {"result_data": _json_or_none(result_data), "message": message},
                EventKind.COMPLETED,
            )
        except LeaseLost:
            # A holder re-sending its completion (say, after a lost HTTP response) gets the same
            # answer again instead of an error; anything else stays refused.
            row = await self.db.fetch_one(QUERIES["get_job"], {"id": job_id})
            if row is None or not rules.completion_replayed(
                row["status"],
                row["claim_token"],
                None if row["result_data"] is None else _json_decode(row["result_data"]),
                token,
                _as_stored(result_data),
            ):
                raise
            return job_from_row(row)

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
        return await self._fenced(
            "fail_job",
            job_id,
            token,
            {"error": error, "retry": retry, "retry_at": retry_at, "message": message, "traceback": traceback},
            EventKind.FAILED,
        )

    async def ended_attempts(self, job_id: str, limit: int = 100) -> list[Attempt]:
        rows = await self.db.fetch_all(QUERIES["ended_attempts"], {"job_id": job_id, "limit": limit})
        return [attempt_from_row(row) for row in reversed(rows)]

    async def acknowledge_cancel(self, job_id: str, token: str, message: str | None) -> Job:
        return await self._fenced(
            "cancel_held_job", job_id, token, {"message": message}, EventKind.CANCELLED
        )

    async def release(self, job_id: str, token: str, message: str | None) -> Job:
        return await self._fenced("release_job", job_id, token, {"message": message}, EventKind.REQUEUED)

    async def reap_expired(self, limit: int = 500) -> list[Job]:
        """Requeue (or fail, or cancel) jobs whose lease lapsed; returns them."""
        params = {"now": time.time(), "limit": limit}
        if await self.db.fetch_one(QUERIES["any_lease_expired"], params) is None:
            return []  # the common case: no write lock taken

        def op(conn: WriteConnection, events: list[EventRow]) -> list[sqlite3.Row]:
            rows = conn.fetch_all(QUERIES["reap_expired"], params)
            for row in rows:
                kind = rules.REAPED_KIND.get(row["status"], EventKind.REQUEUED)
                self._record(conn, events, row, kind, _event_data(kind, row))
            return rows

        return [job_from_row(row) for row in await self._write(op)]


    # -- worker pools you can see ---------------------------------------------------------------

    async def register_worker(
        self, *, worker_id: str, host: str, pid: int, job_types: Sequence[str], concurrency: int, ttl: float
    ) -> Worker:
        now = time.time()
        params = {
            "id": worker_id,
            "host": host,
            "pid": pid,
            "job_types": _json_encode(list(job_types)).decode(),
            "concurrency": concurrency,
            "now": now,
            "expires_at": now + ttl,
        }

        def op(conn: WriteConnection, events: list[EventRow]) -> sqlite3.Row:
            row = conn.fetch_one(QUERIES["register_worker"], params)
            assert row is not None  # an upsert always returns its row
            return row

        return worker_from_row(await self._write(op), 0, [])

    async def unregister_worker(self, worker_id: str) -> bool:
        def op(conn: WriteConnection, events: list[EventRow]) -> bool:
            return conn.fetch_one(QUERIES["delete_worker"], {"id": worker_id}) is not None

        return await self._write(op)

    async def delete_lapsed_workers(self) -> int:
        now = time.time()
        if not await self.db.fetch_all(QUERIES["any_lapsed_worker"], {"now": now}):
            return 0  # the common case: no write lock taken

        def op(conn: WriteConnection, events: list[EventRow]) -> int:
            return len(conn.fetch_all(QUERIES["delete_lapsed_workers"], {"now": now}))

        return await self._write(op)

    async def live_workers(self, held_ids_shown: int) -> list[Worker]:
        now = time.time()
        rows = await self.db.fetch_all(QUERIES["live_workers"], {"now": now})
        held = await self.db.fetch_all(
            QUERIES["held_jobs_of_live_workers"], {"now": now, "shown": held_ids_shown}
        )
        grouped = rules.held_by_worker([(r[0], r[1], r[2]) for r in held])
        return [worker_from_row(row, *grouped.get(row["id"], (0, []))) for row in rows]

    async def live_worker_types(self) -> set[str]:
        rows = await self.db.fetch_all(QUERIES["live_worker_types"], {"now": time.time()})
        return {row[0] for row in rows}

    async def waiting_types(self) -> set[str]:
        return {row[0] for row in await self.db.fetch_all(QUERIES["waiting_types"])}

    # -- bulk operations ------------------------------------------------------------------------

    async def insert_jobs(self, items: Sequence[NewJob], *, atomic: bool) -> list[BatchOutcome]:
        """Store a batch in one write op: the jobs without idempotency key join the
        transaction's multi-row insert (as ``insert_job`` does for one); the keyed ones are
        checked against the stored keys first, so a refusal is known before anything is written."""
        now = time.time()
        unkeyed = {
            index: _new_job_row(
                item.job_type, item.request_data, item.priority, item.max_attempts, now,
                now if item.run_at is None else item.run_at, item.timeout, item.concurrency_key,
                item.trace_context,
            )
            for index, item in enumerate(items)
            if item.idempotency_key is None
        }  # fmt: skip
        keys = [item.idempotency_key for item in items if item.idempotency_key is not None]

        def op(conn: WriteConnection, events: list[EventRow]) -> list[Any]:
            stored = {}
            if keys:
                rows = conn.fetch_all(QUERIES["get_jobs_by_idempotency_keys"], {"keys": _json_encode(keys).decode()})
                stored = {r["idempotency_key"]: (r["id"], r["idempotency_fingerprint"], r) for r in rows}
            plan = rules.plan_batch(items, stored)
            if atomic and plan.errors:
                raise BatchRefused(sorted(plan.errors.items()), len(items))
            outcomes: list[Any] = [None] * len(items)
            rules.settle_known(outcomes, plan)
            pending = _pending_rows(conn)
            for index in plan.inserts:
                item = items[index]
                if item.idempotency_key is None:
                    job, row = unkeyed[index]
                    pending.jobs.append(row)
                    _add_event(pending, events, job, EventKind.CREATED, at=now)
                    outcomes[index] = (job, True)
                    continue
                params = self._keyed_job_params(
                    item.job_type, item.request_data, item.priority, item.max_attempts, now,
                    now if item.run_at is None else item.run_at, item.timeout,
                    item.idempotency_key, item.concurrency_key, None, None, item.trace_context,
                )  # fmt: skip
                inserted = conn.fetch_one(QUERIES["insert_job"], params)
                assert inserted is not None  # the key was free: checked under this write lock
                outcomes[index] = (self._record(conn, events, inserted, EventKind.CREATED), True)
            for index, earlier in plan.repeats.items():
                outcomes[index] = (outcomes[earlier][0], False)
            return outcomes

        return [
            outcome if isinstance(outcome, JobQueueError) or isinstance(outcome[0], Job)
            else (job_from_row(outcome[0]), outcome[1])
            for outcome in await self._write(op)
        ]

    async def retry_failed(self, job_type: str, limit: int) -> tuple[list[str], bool]:
        params = {"job_type": job_type, "limit": limit, "now": time.time()}
        return await self._bulk_change("retry_failed_of_type", "any_failed_of_type", params, EventKind.RETRIED)

    async def cancel_waiting(self, job_type: str, limit: int, message: str) -> tuple[list[str], bool]:
        params = {"job_type": job_type, "limit": limit, "now": time.time(), "message": message}
        return await self._bulk_change("cancel_waiting_of_type", "any_waiting_of_type", params, EventKind.CANCELLED)

    async def purge(
        self, statuses: Sequence[JobStatus], job_type: str | None, before: float | None, limit: int
    ) -> tuple[list[str], bool]:
        params = {
            "statuses": _json_encode([s.value for s in statuses]).decode(),
            "job_type": job_type,
            "before": before,
            "limit": limit,
        }
        return await self._bulk_change("purge_jobs", "any_to_purge", params, None)

    async def _bulk_change(
        self, query: str, remaining: str, params: dict[str, Any], kind: EventKind | None
    ) -> tuple[list[str], bool]:
        """Change (or, without ``kind``, delete) the jobs ``query`` picks, recording ``kind`` for
        each, and tell whether ``remaining`` still finds some, all in one write op."""

        def op(conn: WriteConnection, events: list[EventRow]) -> tuple[list[str], bool]:
            rows = conn.fetch_all(QUERIES[query], params)
            if kind is not None:
                for row in rows:
                    self._record(conn, events, row, kind)
            more = bool(conn.fetch_all(QUERIES[remaining], params)[0][0])
            return [row["id"] for row in rows], more

        return await self._write(op)

    # -- flow control per job type ------------------------------------------------------------

    async def get_type_controls(self, job_type: str) -> TypeControls:
        now = time.time()
        row = await self.db.fetch_one(QUERIES["type_control"], {"job_type": job_type})
        limits = None if row is None else limits_from_row(row)
        starts = await self._window_starts(limits, now)
        return flow.type_controls(
            job_type, limits, await self.count_by_status(job_type), starts, now,
            None if row is None else _ts(row["updated_at"]),
        )

    async def list_type_controls(self) -> list[TypeControls]:
        now = time.time()
        stored = {
            row["job_type"]: (limits_from_row(row), _ts(row["updated_at"]))
            for row in await self.db.fetch_all(QUERIES["all_type_controls"])
        }
        rows = await self.db.fetch_all(QUERIES["count_by_type_and_status"])
        counts = [(row["job_type"], row["status"], row["jobs"]) for row in rows]
        return await flow.list_type_controls(stored, counts, lambda limits: self._window_starts(limits, now), now)

    async def _window_starts(self, limits: flow.Limits | None, now: float) -> list[float]:
        if limits is None or limits.rate_period is None:
            return []
        rows = await self.db.fetch_all(
            QUERIES["starts_after"], {"job_type": limits.job_type, "since": now - limits.rate_period}
        )
        return [row[0] for row in rows]

    async def set_type_controls(self, job_type: str, update: TypeControlsUpdate) -> TypeControls:
        """Change the fields of ``update`` that were sent; a type left without any control
        loses its row (its claims take the unlimited path again)."""
        change = flow.ControlsChange.of(update)
        params = {"job_type": job_type, "now": time.time(), **change._asdict()}

        def op(conn: WriteConnection, events: list[EventRow]) -> None:
            conn.fetch_all(QUERIES["set_type_controls"], params)
            conn.fetch_all(QUERIES["drop_empty_type_controls"], params)
            if change.clears_rate:
                conn.fetch_all(QUERIES["forget_starts"], params)

        await self._write(op)
        return await self.get_type_controls(job_type)

    # -- API keys and browser sessions ------------------------------------------------------

    async def insert_api_key(
        self, *, key_id: str, name: str, key_hash: str, scopes: Sequence[str], job_types: Sequence[str] | None
    ) -> ApiKey:
        params = {
            "id": key_id,
            "name": name,
            "key_hash": key_hash,
            "scopes": _json_encode(list(scopes)).decode(),
            "job_types": None if job_types is None else _json_encode(list(job_types)).decode(),
            "now": time.time(),
        }

        def op(conn: WriteConnection, events: list[EventRow]) -> sqlite3.Row:
            row = conn.fetch_one(QUERIES["insert_api_key"], params)
            if row is None:
                raise ApiKeyExists(f"a key named {name!r} is in use: revoke it first or pick another name")
            return row

        return api_key_from_row(await self._write(op))

    async def get_api_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        row = await self.db.fetch_one(QUERIES["get_api_key"], {"id": key_id})
        return None if row is None else (api_key_from_row(row), row["key_hash"])

    async def list_api_keys(self) -> list[ApiKey]:
        return [api_key_from_row(row) for row in await self.db.fetch_all(QUERIES["list_api_keys"])]

    async def any_api_key(self) -> bool:
        row = await self.db.fetch_one(QUERIES["any_api_key"])
        return bool(row[0])

    async def revoke_api_key(self, key: str) -> ApiKey:
        params = {"key": key, "now": time.time()}

        def op(conn: WriteConnection, events: list[EventRow]) -> sqlite3.Row:
            row = conn.fetch_one(QUERIES["revoke_api_key_by_id"], params) or conn.fetch_one(
                QUERIES["revoke_api_key_by_name"], params
            )
            if row is None:
                raise ApiKeyNotFound(key)
            conn.fetch_all(QUERIES["delete_sessions_of_key"], {"id": row["id"]})
            return row

        return api_key_from_row(await self._write(op))

    async def touch_api_key(self, key_id: str, interval: float) -> None:
        params = {"id": key_id, "now": time.time(), "interval": interval}

        def op(conn: WriteConnection, events: list[EventRow]) -> None:
            conn.fetch_all(QUERIES["touch_api_key"], params)

        await self._write(op)

    async def insert_session(
        self, *, token_hash: str, key_id: str | None, bootstrap_proof: str | None, expires_at: float
    ) -> None:
        now = time.time()
        params = {
            "token_hash": token_hash,
            "key_id": key_id,
            "bootstrap_proof": bootstrap_proof,
            "now": now,
            "expires_at": expires_at,
        }

        def op(conn: WriteConnection, events: list[EventRow]) -> None:
            conn.fetch_all(QUERIES["delete_expired_sessions"], {"now": now})
            conn.fetch_all(QUERIES["insert_session"], params)

        await self._write(op)

    async def get_session(self, token_hash: str) -> ApiSession | None:
        row = await self.db.fetch_one(QUERIES["get_session"], {"token_hash": token_hash, "now": time.time()})
        if row is None:
            return None
        return ApiSession(
            key=None if row["id"] is None else api_key_from_row(row),
            bootstrap_proof=row["session_bootstrap_proof"],
            expires_at=_ts(row["session_expires_at"]),  # type: ignore[arg-type]
        )

    async def delete_session(self, token_hash: str) -> None:
        def op(conn: WriteConnection, events: list[EventRow]) -> None:
            conn.fetch_all(QUERIES["delete_session"], {"token_hash": token_hash})

        await self._write(op)

    # -- periodic jobs ------------------------------------------------------------------------

    async def put_schedule(
        self, name: str, spec: ScheduleSpec, *, source: str, next_run_at: float
    ) -> tuple[Schedule, bool]:
        params = {
            "name": name,
            "job_type": spec.job_type,
            "cron": spec.cron,
            "every": spec.every,
            "timezone": spec.timezone,
            "request_data": _json_or_none(spec.request_data),
            "priority": spec.priority,
            "max_attempts": spec.max_attempts,
            "timeout": spec.timeout,
            "missed": spec.missed.value,
            "source": source,
            "next_run_at": next_run_at,
            "now": time.time(),
        }

        def op(conn: WriteConnection, events: list[EventRow]) -> sqlite3.Row:
            return conn.fetch_one(QUERIES["upsert_schedule"], params)

        row = await self._write(op)
        return schedule_from_row(row), bool(row["created"])

    async def get_schedule(self, name: str) -> Schedule | None:
        row = await self.db.fetch_one(QUERIES["get_schedule"], {"name": name})
        return None if row is None else schedule_from_row(row)

    async def list_schedules(self) -> list[Schedule]:
        return [schedule_from_row(row) for row in await self.db.fetch_all(QUERIES["list_schedules"])]

    async def delete_schedule(self, name: str) -> bool:
        def op(conn: WriteConnection, events: list[EventRow]) -> bool:
            return conn.fetch_one(QUERIES["delete_schedule"], {"name": name}) is not None

        return await self._write(op)

    async def set_schedule_paused(self, name: str, paused: bool, next_run_at: float | None) -> Schedule | None:
        params = {"name": name, "paused": int(paused), "next_run_at": next_run_at, "now": time.time()}

        def op(conn: WriteConnection, events: list[EventRow]) -> sqlite3.Row | None:
            return conn.fetch_one(QUERIES["set_schedule_paused"], params)

        row = await self._write(op)
        return None if row is None else schedule_from_row(row)

    async def due_schedules(self, until: float, limit: int) -> list[Schedule]:
        rows = await self.db.fetch_all(QUERIES["due_schedules"], {"until": until, "limit": limit})
        return [schedule_from_row(row) for row in rows]

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
        now = time.time()
        job = self._keyed_job_params(
            job_type, request_data, priority, max_attempts, now, now, timeout, idempotency_key
        )
        cas = {"name": name, "due": due.timestamp(), "next_run_at": next_run_at, "job_id": job["id"]}

        def op(conn: WriteConnection, events: list[EventRow]) -> tuple[sqlite3.Row, bool] | None:
            if conn.fetch_one(QUERIES["fire_schedule"], cas) is None:
                return None  # another scheduler fired this tick
            row, created = self._insert_keyed(conn, events, job)
            if not created:
                conn.fetch_all(QUERIES["set_schedule_last_job"], {"name": name, "job_id": row["id"]})
            return row, created

        fired = await self._write(op)
        return None if fired is None else (job_from_row(fired[0]), fired[1])

    async def skip_schedule_ticks(self, name: str, due: datetime, next_run_at: float) -> bool:
        params = {"name": name, "due": due.timestamp(), "next_run_at": next_run_at}

        def op(conn: WriteConnection, events: list[EventRow]) -> bool:
            return conn.fetch_one(QUERIES["skip_schedule_ticks"], params) is not None

        return await self._write(op)


def schedule_from_row(row: sqlite3.Row) -> Schedule:
    return Schedule(
        name=row["name"],
        job_type=row["job_type"],
        cron=row["cron"],
        every=None if row["interval"] is None else float(row["interval"]),  # RETURNING skips REAL affinity
        timezone=row["timezone"],
        request_data=None if row["request_data"] is None else _json_decode(row["request_data"]),
        priority=row["priority"],
        max_attempts=row["max_attempts"],
        timeout=row["timeout"],
        missed=MissedTicks(row["missed"]),
        source=row["source"],
        paused=bool(row["paused"]),
        next_run_at=_ts(row["next_run_at"]),  # type: ignore[arg-type]
        last_run_at=_ts(row["last_run_at"]),
        last_job_id=row["last_job_id"],
        created_at=_ts(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_ts(row["updated_at"]),  # type: ignore[arg-type]
    )


def _active_controls(conn: WriteConnection, types: list[str] | None) -> dict[str, flow.Limits]:
    """The controls that change how the claim of ``types`` (None: any type) goes, by type."""
    if types is not None and len(types) == 1:
        row = conn.fetch_one(QUERIES["type_control"], {"job_type": types[0]})
        rows = [] if row is None else [row]
    else:
        wanted = None if types is None else _json_encode(types).decode()
        rows = conn.fetch_all(QUERIES["type_controls_of"], {"job_types": wanted})
    found = (limits_from_row(row) for row in rows)
    return {limits.job_type: limits for limits in found if limits.active}


def _claim_controlled(
    conn: WriteConnection, controls: dict[str, flow.Limits], types: list[str] | None, params: dict[str, Any]
) -> list[sqlite3.Row]:
    """The claim when some of its types are paused or limited: candidates of the other types as
    usual, then of each limited type as many as its limits allow now (counted here, under the
    write lock), merged in claim order and claimed by rowid; starts of rate-limited types are
    recorded in the same transaction."""
    now, limit = params["now"], params["limit"]
    candidates: list[sqlite3.Row] = []
    if types is None:
        candidates += conn.fetch_all(
            QUERIES["claim_candidates_except"],
            {"excluded": _json_encode(list(controls)).decode(), "now": now, "limit": limit},
        )
    else:
        for job_type in types:
            if job_type not in controls:
                candidates += conn.fetch_all(
                    QUERIES["claim_candidates_of_type"], {"job_type": job_type, "now": now, "limit": limit}
                )
    for limits in controls.values():
        if not limits.paused:
            candidates += _limited_candidates(conn, limits, now, limit)
    if not candidates:
        return []
    candidates.sort(key=lambda c: (-c["priority"], c["created_at"]))
    rowids = [c["rowid"] for c in candidates[:limit]]
    rows = conn.fetch_all(QUERIES["claim_jobs_by_rowid"], {**params, "rowids": _json_encode(rowids).decode()})
    started = [row["job_type"] for row in rows if _rate_limited(controls.get(row["job_type"]))]
    if started:
        conn.fetch_all(QUERIES["record_starts"], {"job_types": _json_encode(started).decode(), "now": now})
        for job_type in set(started):
            period = controls[job_type].rate_period
            assert period is not None  # set with rate_limit (a CHECK of the table)
            conn.fetch_all(QUERIES["forget_starts_before"], {"job_type": job_type, "before": now - period})
    return rows


def _rate_limited(limits: flow.Limits | None) -> bool:
    return limits is not None and limits.rate_limit is not None


def _limited_candidates(conn: WriteConnection, limits: flow.Limits, now: float, limit: int) -> list[sqlite3.Row]:
    """The waiting jobs of one limited type the claim may start now, in claim order.

    With ``max_running_per_key`` the type's waiting jobs are read in claim order, passing over
    those whose key is at its limit: fair between keys, at the cost of reading past a saturated
    key's backlog (O(that backlog) per claim in the worst case, under the write lock) until
    enough jobs of other keys are found or the type's waiting jobs run out.
    """
    since = None if limits.rate_period is None else now - limits.rate_period
    usage = conn.fetch_one(QUERIES["type_usage"], {"job_type": limits.job_type, "since": since})
    assert usage is not None  # an aggregate always answers one row
    allowed = flow.allowance(limits, limit, usage["held"], usage["starts"])
    if allowed == 0:
        return []
    per_key = limits.max_running_per_key
    if per_key is None:
        return conn.fetch_all(
            QUERIES["claim_candidates_of_type"], {"job_type": limits.job_type, "now": now, "limit": allowed}
        )
    held = {row[0]: row[1] for row in conn.fetch_all(QUERIES["held_by_key"], {"job_type": limits.job_type})}
    picker = flow.KeyedPicker(held, per_key, allowed)
    chosen: list[sqlite3.Row] = []
    cursor = conn.iterate(QUERIES["waiting_of_type"], {"job_type": limits.job_type, "now": now})
    try:
        for row in cursor:
            if picker.take(row["concurrency_key"]):
                chosen.append(row)
                if picker.full:
                    break
    finally:
        cursor.close()
    return chosen


def _settle_dependents(conn: WriteConnection, events: list[EventRow], finished: sqlite3.Row) -> None:
    """``finished`` (a job others depend on) just finished: its blocked dependents whose
    dependencies have now all finished join the queue; if it did not complete, those whose
    policy is ``cancel`` end cancelled, naming it, and so on down their own dependents."""
    pending = _pending_rows(conn)
    now = finished["updated_at"]
    unsettled = [finished]
    while unsettled:
        job = unsettled.pop()
        if job["status"] != JobStatus.COMPLETED.value:
            reason = rules.dependency_failure_message(job["id"], job["status"])
            for row in conn.fetch_all(QUERIES["cancel_dependents"], {"id": job["id"], "now": now, "reason": reason}):
                _add_event(pending, events, row, EventKind.CANCELLED)
                if row["has_dependents"]:
                    unsettled.append(row)
        for row in conn.fetch_all(QUERIES["release_dependents"], {"id": job["id"], "now": now}):
            _add_event(pending, events, row, EventKind.STATUS)


def _new_job_row(
    job_type: str,
    request_data: Any,
    priority: int,
    max_attempts: int,
    now: float,
    due: float,
    timeout: float | None,
    concurrency_key: str | None,
    trace_context: dict[str, str] | None = None,
) -> tuple[Job, tuple[Any, ...]]:
    """A job without idempotency key, and its values for ``insert_new_jobs``."""
    encoded = None if request_data is None else _json_encode(request_data)
    job = rules.new_job(job_type, encoded, priority, max_attempts, now, due, timeout, concurrency_key, trace_context)
    row = (
        job.id, job_type, priority, None if encoded is None else encoded.decode(),
        now, now, max_attempts, due, timeout, concurrency_key, _json_or_none(trace_context),
    )
    return job, row


def _as_stored(value: Any) -> Any:
    """``value`` as it reads back once stored (JSON round trip), to compare with a stored one."""
    return None if value is None else _json_decode(_json_encode(value))


def _status_of(conn: WriteConnection, job_id: str) -> str | None:
    row = conn.fetch_one(QUERIES["get_job_status"], {"id": job_id})
    return None if row is None else str(row[0])


def _event_data(kind: EventKind, row: sqlite3.Row) -> str | None:
    """The event's data (``rules.event_data``) as JSON text, from a row whose result is stored
    as JSON text already: the common case, a completion, copies it without decoding."""
    if kind is EventKind.COMPLETED:
        return row["result_data"]  # type: ignore[no-any-return]
    data = rules.event_data(kind, None, row["error"])
    return None if data is None else _json_encode(data).decode()
