"""Job storage in PostgreSQL: the ``Store`` contract in PostgreSQL's SQL.

Queries live in ``queries.sql`` next to this module. Writes run through ``PgDatabase.write``
(group commit, events in commit order); a method that reads before it writes locks the row it
read (``FOR UPDATE``) in the same write op, so the decision and the change see the same job.
What a change means (allowed moves, event kinds, refusals) is decided in
``jobqueue.storage.rules``, exactly as for SQLite.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from jobqueue.errors import (
    ApiKeyExists,
    ApiKeyNotFound,
    BatchRefused,
    DatabaseError,
    JobNotFound,
    JobQueueError,
    LeaseLost,
)
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
from jobqueue.storage.postgres.connection import (
    QUERIES,
    EventValues,
    MergedOp,
    Outcome,
    PgDatabase,
    Row,
    Transaction,
)

T = TypeVar("T")
#: A write operation of the store: runs in a transaction and appends the events it recorded.
EventedOp = Callable[[Transaction, list[EventValues]], Awaitable[T]]

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode

#: Inserts of a job with a unique key before giving up, each after the key's job finished
#: between the insert and the read of that job (by another transaction).
UNIQUE_INSERT_TRIES = 5


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _utc(value: datetime | None) -> datetime | None:
    # Rows come back in the session's time zone; the API shows UTC on every backend.
    return None if value is None else value.astimezone(UTC)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else _json_encode(value).decode()


def attempt_from_row(row: Row) -> Attempt:
    return Attempt(
        attempt=row["attempt"],
        worker_id=row["worker_id"],
        started_at=_utc(row["started_at"]),
        ended_at=_utc(row["ended_at"]),
        outcome=row["outcome"],
        error=row["error"],
        traceback=row["traceback"],
    )


def job_from_row(row: Row) -> Job:
    return Job(
        id=row["id"],
        status=JobStatus(row["status"]),
        progress=row["progress"],
        job_type=row["job_type"],
        priority=row["priority"],
        request_data=row["request_data"],
        result_data=row["result_data"],
        message=row["message"],
        error=row["error"],
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_utc(row["updated_at"]),  # type: ignore[arg-type]
        started_at=_utc(row["started_at"]),
        completed_at=_utc(row["completed_at"]),
        worker_id=row["worker_id"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=_utc(row["run_at"]),  # type: ignore[arg-type]
        timeout=row["timeout"],
        lease_expires_at=_utc(row["lease_expires_at"]),
        cancel_requested=row["cancel_requested"],
        idempotency_key=row["idempotency_key"],
        event_seq=row["event_seq"],
        concurrency_key=row["concurrency_key"],
        attempt_started_at=_utc(row["attempt_started_at"]),
        depends_on=row["depends_on"],
        on_dependency_failure=row["on_dependency_failure"],
        unique_key=row["unique_key"],
        trace_context=None if row["trace_context"] is None else _json_decode(row["trace_context"]),
    )


def limits_from_row(row: Row) -> flow.Limits:
    return flow.Limits(
        job_type=row["job_type"],
        paused=row["paused"],
        max_running=row["max_running"],
        max_running_per_key=row["max_running_per_key"],
        rate_limit=row["rate_limit"],
        rate_period=row["rate_period"],
    )


def api_key_from_row(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        scopes=[KeyScope(s) for s in row["scopes"]],
        job_types=row["job_types"],
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        last_used_at=_utc(row["last_used_at"]),
        revoked_at=_utc(row["revoked_at"]),
    )


def worker_from_row(row: Row, held: int, held_ids: list[str]) -> Worker:
    return Worker(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        job_types=row["job_types"],
        concurrency=row["concurrency"],
        started_at=_utc(row["started_at"]),  # type: ignore[arg-type]
        heartbeat_at=_utc(row["heartbeat_at"]),  # type: ignore[arg-type]
        expires_at=_utc(row["expires_at"]),  # type: ignore[arg-type]
        held_jobs=held,
        held_job_ids=held_ids,
    )


def event_from_row(row: Row) -> JobEvent:
    return JobEvent(
        id=row["id"],
        seq=row["seq"],
        job_id=row["job_id"],
        job_type=row["job_type"],
        kind=EventKind(row["kind"]),
        status=JobStatus(row["status"]),
        progress=row["progress"],
        message=row["message"],
        data=row["data"],
        at=_utc(row["at"]),  # type: ignore[arg-type]
    )


def _event_from_values(values: EventValues) -> JobEvent:
    id_, job_id, seq, job_type, kind, status, progress, message, data, at = values
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
        at=at.astimezone(UTC),
    )


def _record(tx: Transaction, events: list[EventValues], row: Row | Job, kind: EventKind, data: Any = None) -> None:
    """Record the event of the change that produced ``row`` (``data``: the decoded payload).

    Every change of a job passes here, so this is where a job that others depend on and that
    just finished has its dependents settled, in the same transaction (at its end, see
    ``Transaction.before_finish``), whichever path finished it. A job without dependents
    (nearly all) pays one column read for it.
    """
    if isinstance(row, Job):
        values: EventValues = [
            0, row.id, row.event_seq, row.job_type, kind.value, row.status.value,
            row.progress, row.message, _json_or_none(data), row.updated_at,
        ]
    else:
        values = [
            0, row["id"], row["event_seq"], row["job_type"], kind.value, row["status"],
            row["progress"], row["message"], _json_or_none(data), row["updated_at"],
        ]
        if kind in TERMINAL_EVENT_KINDS and row["has_dependents"]:
            tx.before_finish.append(functools.partial(_settle_dependents, finished=row, events=events))
    tx.events.append(values)
    events.append(values)


async def _settle_dependents(tx: Transaction, *, finished: Row, events: list[EventValues]) -> None:
    """``finished`` (a job others depend on) finished: its blocked dependents whose
    dependencies have now all finished join the queue; if it did not complete, those whose
    policy is ``cancel`` end cancelled, naming it (their own dependents are settled in turn:
    recording their end defers that too). Their events go with those of the op that finished it."""
    params = {"id": finished["id"], "now": finished["updated_at"]}
    if not await tx.fetch_all(QUERIES["lock_dependents"], params):
        return
    if finished["status"] != JobStatus.COMPLETED.value:
        reason = rules.dependency_failure_message(finished["id"], finished["status"])
        for row in await tx.fetch_all(QUERIES["cancel_dependents"], {**params, "reason": reason}):
            _record(tx, events, row, EventKind.CANCELLED)
    for row in await tx.fetch_all(QUERIES["release_dependents"], params):
        _record(tx, events, row, EventKind.STATUS)


def _event_data(kind: EventKind, row: Row) -> Any:
    return rules.event_data(kind, row["result_data"], row["error"])


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
    """The ``insert_job`` parameters of a job that may conflict (an idempotency or unique key)
    or has dependencies."""
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
        "now": _ts(now),
        "max_attempts": max_attempts,
        "run_at": _ts(due),
        "timeout": timeout,
        "idempotency_key": idempotency_key,
        "fingerprint": fingerprint,
        "concurrency_key": concurrency_key,
        "trace_context": _json_or_none(trace_context),
        **rules.option_columns(dependencies, unique),
    }


async def _insert_keyed(tx: Transaction, events: list[EventValues], params: dict[str, Any]) -> tuple[Row, bool]:
    """Insert a job with an idempotency key (and its 'created' event); returns it and True, or
    the job that holds the key already and False."""
    row = await tx.fetch_one(QUERIES["insert_job"], params)
    if row is not None:
        _record(tx, events, row, EventKind.CREATED)
        return row, True
    existing = await tx.fetch_one(QUERIES["get_job_by_idempotency_key"], {"key": params["idempotency_key"]})
    assert existing is not None  # the conflict that suppressed the insert is this row
    return existing, False


def schedule_from_row(row: Row) -> Schedule:
    return Schedule(
        name=row["name"],
        job_type=row["job_type"],
        cron=row["cron"],
        every=row["interval"],
        timezone=row["timezone"],
        request_data=row["request_data"],
        priority=row["priority"],
        max_attempts=row["max_attempts"],
        timeout=row["timeout"],
        missed=MissedTicks(row["missed"]),
        source=row["source"],
        paused=row["paused"],
        next_run_at=_utc(row["next_run_at"]),  # type: ignore[arg-type]
        last_run_at=_utc(row["last_run_at"]),
        last_job_id=row["last_job_id"],
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_utc(row["updated_at"]),  # type: ignore[arg-type]
    )


class PostgresStore:
    """Job storage in one PostgreSQL database, shared by any number of processes and hosts.

    Every change of a job records a ``JobEvent`` in the same transaction; once that transaction
    has committed, the events are handed to the listeners (the event hub publishes them).
    """

    backend = "postgresql"

    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        self._listeners: list[EventListener] = []

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[PostgresStore]:
        db = PgDatabase(
            settings.database_url,
            pool_size=settings.database_pool_size,
            transaction_pooling=settings.database_pooling == "transaction",
        )
        await db.open()
        try:
            yield cls(db)
        finally:
            await db.close()

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    async def listen(self, on_signal: Callable[[], None]) -> bool:
        return await self.db.listen(on_signal)

    async def migrate(self) -> list[str]:
        return [m.name for m in await apply_migrations(self.db)]

    async def _write(self, op: EventedOp[T]) -> T:
        events: list[EventValues] = []

        async def run(tx: Transaction) -> T:
            events.clear()  # a batch retried alone runs the op again from scratch
            return await op(tx, events)

        result = await self.db.write(run)
        if events and self._listeners:
            committed = [_event_from_values(e) for e in events]
            for listener in self._listeners:
                listener(committed)
        return result

    async def _write_merged(self, op: MergedOp) -> Any:
        result = await self.db.write(op)
        if op.events and self._listeners:
            committed = [_event_from_values(e) for e in op.events]
            for listener in self._listeners:
                listener(committed)
        return result

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
        timeout = None if timeout is None else float(timeout)  # the driver wants a float8 a float
        if idempotency_key is None and dependencies is None and unique is None:
            return await self._insert_new_job(
                job_type, request_data, priority, max_attempts, now, due, timeout, concurrency_key, trace_context
            )
        params = _keyed_job_params(
            job_type, request_data, priority, max_attempts, now, due, timeout, idempotency_key,
            concurrency_key, dependencies, unique, trace_context,
        )
        fingerprint = params["fingerprint"]

        async def op(tx: Transaction, events: list[EventValues]) -> tuple[Row, bool]:
            cancel_reason = None
            if dependencies is not None:
                ids = {"ids": dependencies.ids}
                error = rules.unknown_dependencies(
                    dependencies.ids, {row["id"] for row in await tx.fetch_all(QUERIES["known_jobs"], ids)}
                )
                if error is not None:
                    raise error  # before anything is written
                statuses = {row["id"]: row["status"] for row in await tx.fetch_all(QUERIES["mark_dependencies"], ids)}
                params["status"], cancel_reason = rules.initial_status(dependencies, statuses)
            # A conflicting unique key's job may finish between the insert and the read of it
            # (another transaction): then the insert is tried again.
            for _ in range(UNIQUE_INSERT_TRIES):
                row = await tx.fetch_one(QUERIES["insert_job"], params)
                if row is not None:
                    _record(tx, events, row, EventKind.CREATED)
                    if dependencies is not None:
                        await tx.fetch_all(QUERIES["insert_dependencies"], params)
                    if cancel_reason is not None:
                        row = await tx.fetch_one(
                            QUERIES["cancel_blocked_job"],
                            {"id": row["id"], "now": params["now"], "reason": cancel_reason},
                        )
                        assert row is not None
                        _record(tx, events, row, EventKind.CANCELLED)
                    return row, True
                if idempotency_key is not None:
                    existing = await tx.fetch_one(QUERIES["get_job_by_idempotency_key"], {"key": idempotency_key})
                    if existing is not None:
                        rules.check_idempotent_replay(
                            idempotency_key, existing["id"], existing["idempotency_fingerprint"], fingerprint
                        )
                        return existing, False
                assert unique is not None
                if unique.debounced:
                    debounced = await tx.fetch_one(
                        QUERIES["debounce_job"],
                        {
                            "key": unique.key,
                            "request_data": params["request_data"],
                            "run_at": params["run_at"],
                            "now": params["now"],
                        },
                    )
                    if debounced is not None:
                        _record(tx, events, debounced, EventKind.UPDATED)
                        return debounced, False
                existing = await tx.fetch_one(QUERIES["get_unfinished_job_by_unique_key"], {"key": unique.key})
                if existing is not None:
                    return existing, False
            raise DatabaseError(f"unique key {unique.key!r}: its jobs kept finishing while a new one was inserted")

        row, created = await self._write(op)
        return job_from_row(row), created

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
        """A job without idempotency key: its row joins the transaction's one multi-row insert,
        and the job is built here from the values inserted (no row to decode)."""
        job, values = _new_job_values(job_type, request_data, priority, max_attempts, now, due, timeout, concurrency_key, trace_context)

        async def op(tx: Transaction, events: list[EventValues]) -> tuple[Job, bool]:
            tx.new_jobs.append(values)
            _record(tx, events, job, EventKind.CREATED)
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
            "statuses": [s.value for s in statuses] if statuses else None,
            "job_type": job_type,
            "worker_id": worker_id,
            "id_pattern": rules.like_prefix(id_prefix) if id_prefix else None,
            "data_fields": [f.field for f in data] if data else None,
            "data_values": [f.value for f in data] if data else None,
            "data_numbers": [None if f.number is None else repr(f.number) for f in data] if data else None,
            "limit": limit,
            "offset": offset,
        }
        rows = await self.db.fetch_all(QUERIES["list_jobs"], params)
        total = await self.db.fetch_one(QUERIES["count_jobs"], params)
        assert total is not None
        return [job_from_row(r) for r in rows], total["total"]

    async def count_by_status(self, job_type: str | None) -> dict[str, int]:
        rows = await self.db.fetch_all(QUERIES["count_by_status"], {"job_type": job_type})
        return {row["status"]: row["jobs"] for row in rows}

    async def waiting_summary(self, job_type: str | None) -> tuple[int, int, datetime | None]:
        row = await self.db.fetch_one(
            QUERIES["waiting_summary"], {"job_type": job_type, "now": _ts(time.time())}
        )
        assert row is not None
        return row["ready"], row["scheduled"], _utc(row["oldest"])

    async def recent_timings(self, job_type: str | None, since: float) -> tuple[float | None, float | None]:
        row = await self.db.fetch_one(
            QUERIES["recent_timings"], {"job_type": job_type, "since": _ts(since)}
        )
        assert row is not None
        return row["wait"], row["run"]

    async def timings(self, since: float, sample: int, percentiles: Sequence[float]) -> list[TypeTimings]:
        rows = await self.db.fetch_all(
            QUERIES["timings"], {"since": _ts(since), "sample": sample, "percentiles": list(percentiles)}
        )
        return [
            TypeTimings(
                job_type=row["job_type"], count=row["count"], wait=Percentiles(*row["wait"]), run=Percentiles(*row["run"])
            )
            for row in rows
        ]

    async def ping(self) -> None:
        row = await self.db.fetch_one(QUERIES["ping"])
        if row is None or row["read_only"] != "off":
            raise DatabaseError("database is read-only: writes would fail")

    async def cancel_requested(self, worker_id: str) -> list[str]:
        rows = await self.db.fetch_all(QUERIES["cancel_requested_for_worker"], {"worker_id": worker_id})
        return [row["id"] for row in rows]

    # -- changing (unfenced: the seed's API, for operators and simple workers) ----------------

    async def update_job(
        self, job_id: str, update: JobUpdate, fields: set[str], lease: float, *, force: bool = False
    ) -> Job:
        """Apply the ``fields`` of ``update``; the row is locked from the status and claim check on."""
        now = time.time()

        async def op(tx: Transaction, events: list[EventValues]) -> Row:
            row = await tx.fetch_one(QUERIES["get_job_for_update"], {"id": job_id})
            if row is None:
                raise JobNotFound(job_id)
            holder = rules.Holder(row["claim_token"], row["lease_expires_at"] is not None, row["worker_id"])
            plan = rules.plan_update(job_id, JobStatus(row["status"]), update, fields, holder, force=force)
            params = {
                "id": job_id,
                "now": _ts(now),
                "lease_until": _ts(now + lease),
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
            updated = await tx.fetch_one(QUERIES["update_job"], params)
            assert updated is not None  # the row exists: we hold its lock since reading it
            _record(tx, events, updated, plan.kind, _event_data(plan.kind, updated))
            return updated

        return job_from_row(await self._write(op))

    async def cancel(self, job_id: str, message: str | None) -> Job:
        """Cancel a waiting or blocked job at once, or ask the holder of a running one to stop."""
        params = {"id": job_id, "now": _ts(time.time()), "message": message}

        async def op(tx: Transaction, events: list[EventValues]) -> Row:
            row = await tx.fetch_one(QUERIES["cancel_waiting_job"], params)
            if row is not None:
                _record(tx, events, row, EventKind.CANCELLED)
                return row
            row = await tx.fetch_one(QUERIES["request_cancel"], params)
            if row is not None:
                _record(tx, events, row, EventKind.CANCEL_REQUESTED)
                return row
            raise rules.cannot_cancel(job_id, await _status_of(tx, job_id))

        return job_from_row(await self._write(op))

    async def retry(self, job_id: str) -> Job:
        async def op(tx: Transaction, events: list[EventValues]) -> Row:
            row = await tx.fetch_one(QUERIES["retry_job"], {"id": job_id, "now": _ts(time.time())})
            if row is None:
                raise rules.cannot_retry(job_id, await _status_of(tx, job_id))
            _record(tx, events, row, EventKind.RETRIED)
            return row

        return job_from_row(await self._write(op))

    async def delete(self, job_id: str) -> None:
        async def op(tx: Transaction, events: list[EventValues]) -> None:
            if await tx.fetch_one(QUERIES["delete_terminal_job"], {"id": job_id}) is None:
                raise rules.cannot_delete(job_id, await _status_of(tx, job_id))

        await self._write(op)

    async def prune(self, status: JobStatus, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` jobs in ``status`` finished before ``cutoff`` (with their events)."""
        params = {"status": status.value, "cutoff": _ts(cutoff), "limit": limit}

        async def op(tx: Transaction, events: list[EventValues]) -> int:
            return len(await tx.fetch_all(QUERIES["prune_jobs"], params))

        return await self._write(op)

    async def reclaim_space(self) -> int:
        # Autovacuum (tuned per table in the migration) makes deleted rows' space reusable; a
        # jobs table in steady state does not need to shrink, so there is nothing to do here.
        return 0

    # -- events -------------------------------------------------------------------------------

    async def job_events_after(self, job_id: str, after: int, limit: int = 1000) -> list[JobEvent]:
        rows = await self.db.fetch_all(
            QUERIES["job_events_after"], {"job_id": job_id, "after": after, "limit": limit}
        )
        return [event_from_row(r) for r in rows]

    async def unseen_events_after(
        self, after: int, seen: Container[int], limit: int = 1000, *, new_work_only: bool = False
    ) -> tuple[list[JobEvent], int, int]:
        rows = await self.db.fetch_all(QUERIES["event_ids_after"], {"after": after, "limit": limit})
        ids = [row["id"] for row in rows]
        last = ids[-1] if ids else after
        unseen = [i for i in ids if i not in seen]
        if not unseen:
            return [], last, len(ids)
        query = QUERIES["new_work_events_by_ids" if new_work_only else "events_by_ids"]
        rows = await self.db.fetch_all(query, {"ids": unseen})
        return [event_from_row(r) for r in rows], last, len(ids)

    async def events_after(self, after: int, limit: int = 1000) -> list[JobEvent]:
        rows = await self.db.fetch_all(QUERIES["events_after"], {"after": after, "limit": limit})
        return [event_from_row(r) for r in rows]

    async def last_event_id(self) -> int:
        row = await self.db.fetch_one(QUERIES["last_event_id"])
        assert row is not None
        return int(row["last_id"])

    # -- claiming and the holder's operations (fenced by the claim token) ----------------------

    async def claim(
        self, *, worker_id: str, job_types: Sequence[str] | None, limit: int, lease: float
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` due jobs in one statement; best priority, then oldest, first.

        Its first statement (claim_controls) also reads the controls of the claimed types and
        locks the rows of limited ones; with none, the claim is the statement it always was.
        """
        now = time.time()
        params: dict[str, Any] = {
            "worker_id": worker_id,
            "now": _ts(now),
            "lease_until": _ts(now + lease),
            "limit": limit,
        }
        types = None if job_types is None else list(dict.fromkeys(job_types))
        if types is None:
            sql = QUERIES["claim_jobs"]
        else:
            if not types:
                return []
            sql = QUERIES["claim_jobs_of_types"]
            params["job_types"] = types

        async def op(tx: Transaction, events: list[EventValues]) -> list[Row]:
            found = await tx.fetch_all(QUERIES["claim_controls"], {"job_types": types})
            controls = {row["job_type"]: limits_from_row(row) for row in found if row["job_type"] is not None}
            if controls:
                rows = await _claim_controlled(tx, controls, types, params, now)
            else:
                rows = await tx.fetch_all(sql, params)
            for row in rows:
                _record(tx, events, row, EventKind.STATUS)
            return rows

        claimed = [
            ClaimedJob(job=job_from_row(row), claim_token=row["claim_token"]) for row in await self._write(op)
        ]
        # RETURNING does not follow the CTE's ORDER BY; hand jobs out in claim order.
        claimed.sort(key=lambda c: (-c.job.priority, c.job.created_at))
        return claimed

    async def _fenced(
        self, query: str, job_id: str, token: str, params: dict[str, Any], kind: EventKind
    ) -> Job:
        params = {"id": job_id, "token": token, "now": _ts(time.time()), **params}

        async def op(tx: Transaction, events: list[EventValues]) -> Row:
            row = await tx.fetch_one(QUERIES[query], params)
            if row is None:
                raise await _refusal(tx, job_id, token)
            actual = rules.fenced_kind(row["status"], kind)
            _record(tx, events, row, actual, _event_data(actual, row))
            return row

        return job_from_row(await self._write(op))

    async def heartbeat(self, job_id: str, token: str, lease: float) -> bool:
        """Extend the lease (no event: nothing visible changed); True when a cancel was requested.

        A pool renews all its leases at once: the heartbeats of a transaction are one statement.
        """
        item = {"id": job_id, "token": token, "lease_until": _ts(time.time() + lease)}
        return bool(await self.db.write(MergedOp("heartbeat", job_id, item, _heartbeat_many)))

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
        now = time.time()
        item = {
            "id": job_id,
            "token": token,
            "progress": progress,
            "message": message,
            "status": None if status is None else status.value,
            "lease_until": _ts(now + lease),
            "now": _ts(now),
        }
        kind = EventKind.PROGRESS if status is None else EventKind.STATUS
        op = MergedOp(f"progress:{kind.value}", job_id, item, _PROGRESS_MANY[kind])
        return job_from_row(await self._write_merged(op))

    async def complete(self, job_id: str, token: str, result_data: Any, message: str | None) -> Job:
        try:
            item = {
                "id": job_id,
                "token": token,
                "result_data": _json_or_none(result_data),
                "message": message,
                "now": _ts(time.time()),
            }
            return job_from_row(await self._write_merged(MergedOp("complete", job_id, item, _complete_many)))
        except LeaseLost:
            # A holder re-sending its completion (say, after a lost HTTP response) gets the same
            # answer again instead of an error; anything else stays refused.
            row = await self.db.fetch_one(QUERIES["get_job"], {"id": job_id})
            if row is None or not rules.completion_replayed(
                row["status"], row["claim_token"], row["result_data"], token, _as_stored(result_data)
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
            {"error": error, "retry": retry, "retry_at": _ts(retry_at), "message": message, "traceback": traceback},
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
        params = {"now": _ts(time.time()), "limit": limit}
        if await self.db.fetch_one(QUERIES["any_lease_expired"], params) is None:
            return []  # the common case: no write transaction

        async def op(tx: Transaction, events: list[EventValues]) -> list[Row]:
            rows = await tx.fetch_all(QUERIES["reap_expired"], params)
            for row in rows:
                kind = rules.REAPED_KIND.get(row["status"], EventKind.REQUEUED)
                _record(tx, events, row, kind, _event_data(kind, row))
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
            "now": _ts(now),
            "expires_at": _ts(now + ttl),
        }

        async def op(tx: Transaction, events: list[EventValues]) -> Row:
            row = await tx.fetch_one(QUERIES["register_worker"], params)
            assert row is not None  # an upsert always returns its row
            return row

        return worker_from_row(await self._write(op), 0, [])

    async def unregister_worker(self, worker_id: str) -> bool:
        async def op(tx: Transaction, events: list[EventValues]) -> bool:
            return await tx.fetch_one(QUERIES["delete_worker"], {"id": worker_id}) is not None

        return await self._write(op)

    async def delete_lapsed_workers(self) -> int:
        params = {"now": _ts(time.time())}
        if await self.db.fetch_one(QUERIES["any_lapsed_worker"], params) is None:
            return 0  # the common case: no write transaction

        async def op(tx: Transaction, events: list[EventValues]) -> int:
            return len(await tx.fetch_all(QUERIES["delete_lapsed_workers"], params))

        return await self._write(op)

    async def live_workers(self, held_ids_shown: int) -> list[Worker]:
        now = _ts(time.time())
        rows = await self.db.fetch_all(QUERIES["live_workers"], {"now": now})
        held = await self.db.fetch_all(QUERIES["held_jobs_of_live_workers"], {"now": now, "shown": held_ids_shown})
        grouped = rules.held_by_worker([(r["worker_id"], r["id"], r["held"]) for r in held])
        return [worker_from_row(row, *grouped.get(row["id"], (0, []))) for row in rows]

    async def live_worker_types(self) -> set[str]:
        rows = await self.db.fetch_all(QUERIES["live_worker_types"], {"now": _ts(time.time())})
        return {row["job_type"] for row in rows}

    async def waiting_types(self) -> set[str]:
        return {row["job_type"] for row in await self.db.fetch_all(QUERIES["waiting_types"])}

    # -- bulk operations ------------------------------------------------------------------------

    async def insert_jobs(self, items: Sequence[NewJob], *, atomic: bool) -> list[BatchOutcome]:
        """Store a batch in one transaction: the jobs without idempotency key join the
        transaction's one JSON-rows insert (as ``insert_job`` does for one); the keyed ones are
        checked against the stored keys first and inserted under a savepoint, so a key another
        transaction took meanwhile refuses an atomic batch without leaving anything behind."""
        now = time.time()
        # The driver wants a float8 a float; and the fingerprints are those of insert_job.
        items = [item if item.timeout is None else item._replace(timeout=float(item.timeout)) for item in items]
        unkeyed = {
            index: _new_job_values(
                item.job_type, item.request_data, item.priority, item.max_attempts, now,
                now if item.run_at is None else item.run_at, item.timeout, item.concurrency_key,
                item.trace_context,
            )
            for index, item in enumerate(items)
            if item.idempotency_key is None
        }  # fmt: skip
        keys = [item.idempotency_key for item in items if item.idempotency_key is not None]

        async def op(tx: Transaction, events: list[EventValues]) -> list[Any]:
            stored = {}
            if keys:
                rows = await tx.fetch_all(QUERIES["get_jobs_by_idempotency_keys"], {"keys": keys})
                stored = {r["idempotency_key"]: (r["id"], r["idempotency_fingerprint"], r) for r in rows}
            plan = rules.plan_batch(items, stored)
            if atomic and plan.errors:
                raise BatchRefused(sorted(plan.errors.items()), len(items))
            outcomes: list[Any] = [None] * len(items)
            rules.settle_known(outcomes, plan)
            keyed = [index for index in plan.inserts if items[index].idempotency_key is not None]
            inserted: list[tuple[int, Row]] = []
            async with tx.conn.transaction():  # a savepoint: a refused atomic batch leaves nothing
                for index in keyed:
                    item = items[index]
                    params = _keyed_job_params(
                        item.job_type, item.request_data, item.priority, item.max_attempts, now,
                        now if item.run_at is None else item.run_at, item.timeout,
                        item.idempotency_key, item.concurrency_key, None, None, item.trace_context,
                    )  # fmt: skip
                    row = await tx.fetch_one(QUERIES["insert_job"], params)
                    if row is not None:
                        inserted.append((index, row))
                        continue
                    # Another transaction committed this key since it was read.
                    try:
                        existing = await tx.fetch_one(QUERIES["get_job_by_idempotency_key"], {"key": item.idempotency_key})
                        assert existing is not None
                        rules.check_idempotent_replay(
                            item.idempotency_key,  # type: ignore[arg-type]
                            existing["id"], existing["idempotency_fingerprint"], plan.fingerprints[index],
                        )  # fmt: skip
                        outcomes[index] = (existing, False)
                    except JobQueueError as exc:
                        if atomic:
                            raise BatchRefused([(index, exc)], len(items)) from None
                        outcomes[index] = exc
            # Recorded only now: a refusal above must not leave events or rows to insert.
            for index, row in inserted:
                _record(tx, events, row, EventKind.CREATED)
                outcomes[index] = (row, True)
            for index, (job, values) in unkeyed.items():
                tx.new_jobs.append(values)
                _record(tx, events, job, EventKind.CREATED)
                outcomes[index] = (job, True)
            for index, earlier in plan.repeats.items():
                outcomes[index] = (outcomes[earlier][0], False)
            return outcomes

        return [
            outcome if isinstance(outcome, JobQueueError) or isinstance(outcome[0], Job)
            else (job_from_row(outcome[0]), outcome[1])
            for outcome in await self._write(op)
        ]

    async def retry_failed(self, job_type: str, limit: int) -> tuple[list[str], bool]:
        params = {"job_type": job_type, "limit": limit, "now": _ts(time.time())}
        return await self._bulk_change("retry_failed_of_type", "any_failed_of_type", params, EventKind.RETRIED)

    async def cancel_waiting(self, job_type: str, limit: int, message: str) -> tuple[list[str], bool]:
        params = {"job_type": job_type, "limit": limit, "now": _ts(time.time()), "message": message}
        return await self._bulk_change("cancel_waiting_of_type", "any_waiting_of_type", params, EventKind.CANCELLED)

    async def purge(
        self, statuses: Sequence[JobStatus], job_type: str | None, before: float | None, limit: int
    ) -> tuple[list[str], bool]:
        params = {
            "statuses": [s.value for s in statuses],
            "job_type": job_type,
            "before": None if before is None else _ts(before),
            "limit": limit,
        }
        return await self._bulk_change("purge_jobs", "any_to_purge", params, None)

    async def _bulk_change(
        self, query: str, remaining: str, params: dict[str, Any], kind: EventKind | None
    ) -> tuple[list[str], bool]:
        """Change (or, without ``kind``, delete) the jobs ``query`` picks, recording ``kind`` for
        each, and tell whether ``remaining`` still finds some, all in one transaction."""

        async def op(tx: Transaction, events: list[EventValues]) -> tuple[list[str], bool]:
            rows = await tx.fetch_all(QUERIES[query], params)
            if kind is not None:
                for row in rows:
                    _record(tx, events, row, kind)
            found = await tx.fetch_one(QUERIES[remaining], params)
            return [row["id"] for row in rows], bool(found and found["found"])

        return await self._write(op)

    # -- flow control per job type ------------------------------------------------------------

    async def get_type_controls(self, job_type: str) -> TypeControls:
        now = time.time()
        row = await self.db.fetch_one(QUERIES["type_control"], {"job_type": job_type})
        limits = None if row is None else limits_from_row(row)
        return flow.type_controls(
            job_type, limits, await self.count_by_status(job_type), await self._window_starts(limits, now),
            now, None if row is None else _utc(row["updated_at"]),
        )

    async def list_type_controls(self) -> list[TypeControls]:
        now = time.time()
        stored = {
            row["job_type"]: (limits_from_row(row), _utc(row["updated_at"]))
            for row in await self.db.fetch_all(QUERIES["all_type_controls"])
        }
        rows = await self.db.fetch_all(QUERIES["count_by_type_and_status"])
        counts = [(row["job_type"], row["status"], row["jobs"]) for row in rows]
        return await flow.list_type_controls(stored, counts, lambda limits: self._window_starts(limits, now), now)

    async def _window_starts(self, limits: flow.Limits | None, now: float) -> list[float]:
        if limits is None or limits.rate_period is None:
            return []
        rows = await self.db.fetch_all(
            QUERIES["starts_after"], {"job_type": limits.job_type, "since": _ts(now - limits.rate_period)}
        )
        return [row["at"].timestamp() for row in rows]

    async def set_type_controls(self, job_type: str, update: TypeControlsUpdate) -> TypeControls:
        """Change the fields of ``update`` that were sent; a type left without any control
        loses its row (its claims take no lock again)."""
        change = flow.ControlsChange.of(update)
        params = {"job_type": job_type, "now": _ts(time.time()), **change._asdict()}

        async def op(tx: Transaction, events: list[EventValues]) -> None:
            await tx.fetch_all(QUERIES["set_type_controls"], params)
            await tx.fetch_all(QUERIES["drop_empty_type_controls"], params)
            if change.clears_rate:
                await tx.fetch_all(QUERIES["forget_starts"], params)

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
            "scopes": list(scopes),
            "job_types": None if job_types is None else list(job_types),
            "now": _ts(time.time()),
        }

        async def op(tx: Transaction, events: list[EventValues]) -> Row:
            row = await tx.fetch_one(QUERIES["insert_api_key"], params)
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
        return row is not None and bool(row["found"])

    async def revoke_api_key(self, key: str) -> ApiKey:
        params = {"key": key, "now": _ts(time.time())}

        async def op(tx: Transaction, events: list[EventValues]) -> Row:
            row = await tx.fetch_one(QUERIES["revoke_api_key_by_id"], params)
            if row is None:
                row = await tx.fetch_one(QUERIES["revoke_api_key_by_name"], params)
            if row is None:
                raise ApiKeyNotFound(key)
            await tx.fetch_all(QUERIES["delete_sessions_of_key"], {"id": row["id"]})
            return row

        return api_key_from_row(await self._write(op))

    async def touch_api_key(self, key_id: str, interval: float) -> None:
        params = {"id": key_id, "now": _ts(time.time()), "interval": interval}

        async def op(tx: Transaction, events: list[EventValues]) -> None:
            await tx.fetch_all(QUERIES["touch_api_key"], params)

        await self._write(op)

    async def insert_session(
        self, *, token_hash: str, key_id: str | None, bootstrap_proof: str | None, expires_at: float
    ) -> None:
        now = _ts(time.time())
        params = {
            "token_hash": token_hash,
            "key_id": key_id,
            "bootstrap_proof": bootstrap_proof,
            "now": now,
            "expires_at": _ts(expires_at),
        }

        async def op(tx: Transaction, events: list[EventValues]) -> None:
            await tx.fetch_all(QUERIES["delete_expired_sessions"], {"now": now})
            await tx.fetch_all(QUERIES["insert_session"], params)

        await self._write(op)

    async def get_session(self, token_hash: str) -> ApiSession | None:
        row = await self.db.fetch_one(QUERIES["get_session"], {"token_hash": token_hash, "now": _ts(time.time())})
        if row is None:
            return None
        return ApiSession(
            key=None if row["id"] is None else api_key_from_row(row),
            bootstrap_proof=row["session_bootstrap_proof"],
            expires_at=_utc(row["session_expires_at"]),  # type: ignore[arg-type]
        )

    async def delete_session(self, token_hash: str) -> None:
        async def op(tx: Transaction, events: list[EventValues]) -> None:
            await tx.fetch_all(QUERIES["delete_session"], {"token_hash": token_hash})

        await self._write(op)

    # -- periodic jobs ------------------------------------------------------------------------

    async def put_schedule(
        self, name: str, spec: ScheduleSpec, *, source: str, next_run_at: float
    ) -> tuple[Schedule, bool]:
        params = {
            "name": name,
            "job_type": spec.job_type,
            "cron": spec.cron,
            "every": None if spec.every is None else float(spec.every),
            "timezone": spec.timezone,
            "request_data": _json_or_none(spec.request_data),
            "priority": spec.priority,
            "max_attempts": spec.max_attempts,
            "timeout": None if spec.timeout is None else float(spec.timeout),
            "missed": spec.missed.value,
            "source": source,
            "next_run_at": _ts(next_run_at),
            "now": _ts(time.time()),
        }

        async def op(tx: Transaction, events: list[EventValues]) -> Row:
            row = await tx.fetch_one(QUERIES["upsert_schedule"], params)
            assert row is not None
            return row

        row = await self._write(op)
        return schedule_from_row(row), row["created"]

    async def get_schedule(self, name: str) -> Schedule | None:
        row = await self.db.fetch_one(QUERIES["get_schedule"], {"name": name})
        return None if row is None else schedule_from_row(row)

    async def list_schedules(self) -> list[Schedule]:
        return [schedule_from_row(row) for row in await self.db.fetch_all(QUERIES["list_schedules"])]

    async def delete_schedule(self, name: str) -> bool:
        async def op(tx: Transaction, events: list[EventValues]) -> bool:
            return await tx.fetch_one(QUERIES["delete_schedule"], {"name": name}) is not None

        return await self._write(op)

    async def set_schedule_paused(self, name: str, paused: bool, next_run_at: float | None) -> Schedule | None:
        params = {
            "name": name,
            "paused": paused,
            "next_run_at": None if next_run_at is None else _ts(next_run_at),
            "now": _ts(time.time()),
        }

        async def op(tx: Transaction, events: list[EventValues]) -> Row | None:
            return await tx.fetch_one(QUERIES["set_schedule_paused"], params)

        row = await self._write(op)
        return None if row is None else schedule_from_row(row)

    async def due_schedules(self, until: float, limit: int) -> list[Schedule]:
        rows = await self.db.fetch_all(QUERIES["due_schedules"], {"until": _ts(until), "limit": limit})
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
        timeout = None if timeout is None else float(timeout)
        job = _keyed_job_params(job_type, request_data, priority, max_attempts, now, now, timeout, idempotency_key)
        cas = {"name": name, "due": due, "next_run_at": _ts(next_run_at), "job_id": job["id"]}

        async def op(tx: Transaction, events: list[EventValues]) -> tuple[Row, bool] | None:
            if await tx.fetch_one(QUERIES["fire_schedule"], cas) is None:
                return None  # another scheduler fired this tick
            row, created = await _insert_keyed(tx, events, job)
            if not created:
                await tx.fetch_all(QUERIES["set_schedule_last_job"], {"name": name, "job_id": row["id"]})
            return row, created

        fired = await self._write(op)
        return None if fired is None else (job_from_row(fired[0]), fired[1])

    async def skip_schedule_ticks(self, name: str, due: datetime, next_run_at: float) -> bool:
        params = {"name": name, "due": due, "next_run_at": _ts(next_run_at)}

        async def op(tx: Transaction, events: list[EventValues]) -> bool:
            return await tx.fetch_one(QUERIES["skip_schedule_ticks"], params) is not None

        return await self._write(op)


def _new_job_values(
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
    """A job without idempotency key, and its values for ``Transaction.new_jobs``."""
    encoded = None if request_data is None else _json_encode(request_data)
    job = rules.new_job(job_type, encoded, priority, max_attempts, now, due, timeout, concurrency_key, trace_context)
    values = (
        job.id, job_type, priority, None if encoded is None else msgspec.Raw(encoded),
        job.created_at, max_attempts, job.run_at, timeout, concurrency_key, _json_or_none(trace_context),
    )
    return job, values


def _as_stored(value: Any) -> Any:
    """``value`` as it reads back once stored (JSON round trip), to compare with a stored one."""
    return None if value is None else _json_decode(_json_encode(value))


async def _claim_controlled(
    tx: Transaction,
    controls: dict[str, flow.Limits],
    types: list[str] | None,
    params: dict[str, Any],
    now: float,
) -> list[Row]:
    """The claim when some of its types are paused or limited (claim_jobs_controlled); the jobs
    of types with ``max_running_per_key`` are chosen here first, after the lock."""
    keyed_ids: list[str] = []
    for limits in controls.values():
        if limits.max_running_per_key is not None and not limits.paused:
            keyed_ids += await _keyed_candidates(tx, limits, limits.max_running_per_key, now, params["limit"])
    return await tx.fetch_all(
        QUERIES["claim_jobs_controlled"],
        {
            **params,
            "job_types": list(controls) if types is None else types,
            "any_type": types is None,
            "excluded": list(controls),
            "keyed_ids": keyed_ids,
        },
    )


async def _keyed_candidates(
    tx: Transaction, limits: flow.Limits, per_key: int, now: float, limit: int
) -> list[str]:
    """The ids of the waiting jobs of a type with ``max_running_per_key`` the claim may start,
    in claim order. The type's waiting jobs are read through a cursor, passing over those whose
    key is at its limit: fair between keys, at the cost of reading past a saturated key's
    backlog (O(that backlog) per claim in the worst case) until enough jobs of other keys are
    found. Runs after claim_controls locked the type's row, so its counts are current."""
    since = None if limits.rate_period is None else _ts(now - limits.rate_period)
    usage = await tx.fetch_one(QUERIES["type_usage"], {"job_type": limits.job_type, "since": since})
    assert usage is not None  # an aggregate always answers one row
    allowed = flow.allowance(limits, limit, usage["held"], usage["starts"])
    if allowed == 0:
        return []
    rows = await tx.fetch_all(QUERIES["held_by_key"], {"job_type": limits.job_type})
    picker = flow.KeyedPicker({row["concurrency_key"]: row["held"] for row in rows}, per_key, allowed)
    chosen: list[str] = []
    async for row in tx.iterate(QUERIES["waiting_of_type"], {"job_type": limits.job_type, "now": _ts(now)}):
        if picker.take(row["concurrency_key"]):
            chosen.append(row["id"])
            if picker.full:
                break
    return chosen


async def _status_of(tx: Transaction, job_id: str) -> str | None:
    row = await tx.fetch_one(QUERIES["get_job_status"], {"id": job_id})
    return None if row is None else str(row["status"])


async def _refusal(tx: Transaction, job_id: str, token: str) -> Exception:
    row = await tx.fetch_one(QUERIES["get_job"], {"id": job_id})
    if row is None:
        return JobNotFound(job_id)
    return rules.lease_lost(
        job_id, row["status"], row["claim_token"], row["lease_expires_at"] is not None, row["worker_id"], token
    )


def _fenced_many(
    query: str, columns: tuple[tuple[str, str], ...], kind: EventKind
) -> Callable[[Transaction, list[MergedOp]], Awaitable[list[Outcome]]]:
    """Run merged fenced writes as one statement: ``columns`` maps each array parameter of
    ``query`` to the key of the ops' items; rows that do not come back were refused."""

    async def run_many(tx: Transaction, ops: list[MergedOp]) -> list[Outcome]:
        params = {param: [op.item[key] for op in ops] for param, key in columns}
        rows = {row["id"]: row for row in await tx.fetch_all(QUERIES[query], params)}
        outcomes: list[Outcome] = []
        for op in ops:
            row = rows.get(op.job_id)
            if row is None:
                outcomes.append((False, await _refusal(tx, op.job_id, op.item["token"])))
            else:
                actual = rules.fenced_kind(row["status"], kind)
                _record(tx, op.events, row, actual, _event_data(actual, row))
                outcomes.append((True, row))
        return outcomes

    return run_many


_complete_many = _fenced_many(
    "complete_jobs",
    (("ids", "id"), ("tokens", "token"), ("results", "result_data"), ("messages", "message"), ("nows", "now")),
    EventKind.COMPLETED,
)
_PROGRESS_COLUMNS = (
    ("ids", "id"), ("tokens", "token"), ("progresses", "progress"), ("messages", "message"),
    ("statuses", "status"), ("lease_untils", "lease_until"), ("nows", "now"),
)
_PROGRESS_MANY = {
    kind: _fenced_many("report_progress_jobs", _PROGRESS_COLUMNS, kind)
    for kind in (EventKind.PROGRESS, EventKind.STATUS)
}


async def _heartbeat_many(tx: Transaction, ops: list[MergedOp]) -> list[Outcome]:
    params = {
        "ids": [op.job_id for op in ops],
        "tokens": [op.item["token"] for op in ops],
        "lease_untils": [op.item["lease_until"] for op in ops],
    }
    rows = {row["id"]: row for row in await tx.fetch_all(QUERIES["heartbeat_jobs"], params)}
    outcomes: list[Outcome] = []
    for op in ops:
        row = rows.get(op.job_id)
        if row is None:
            outcomes.append((False, await _refusal(tx, op.job_id, op.item["token"])))
        else:
            outcomes.append((True, row["cancel_requested"]))
    return outcomes
