"""What a change of a job means, decided once for every backend.

The stores translate these decisions into their SQL; they never decide on their own which status
changes are allowed, which event a change produces, what the event carries, or how a refusal
is worded. That keeps SQLite and PostgreSQL answering the same thing to the same request.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from jobqueue.errors import (
    IdempotencyConflict,
    InvalidTransition,
    JobHeld,
    JobNotFound,
    JobQueueError,
    LeaseLost,
    ValidationFailed,
)
from jobqueue.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    EventKind,
    Job,
    JobStatus,
    JobUpdate,
)

_encode = msgspec.json.encode

#: Status values (as stored) of waiting jobs: a fenced write that leaves a job here requeued it.
WAITING_VALUES = frozenset(s.value for s in WAITING_STATUSES)

#: Status values (as stored) of finished jobs.
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL_STATUSES)
_UNSUCCESSFUL = frozenset({JobStatus.FAILED.value, JobStatus.CANCELLED.value})

#: The event of each status the reaper can leave an expired job in.
REAPED_KIND = {
    JobStatus.CANCELLED.value: EventKind.CANCELLED,
    JobStatus.FAILED.value: EventKind.FAILED,
}


def fingerprint(
    job_type: str,
    request_data: Any,
    priority: int,
    max_attempts: int,
    timeout: float | None,
    concurrency_key: str | None = None,
    extras: dict[str, Any] | None = None,
) -> str:
    """A hash of a create request, so a reused idempotency key with another body is refused.

    ``concurrency_key`` and ``extras`` (the options a request gave beyond those: dependencies,
    unique key) are left out when absent, so the hashes of requests without them stay what
    they were.
    """
    fields: list[Any] = [job_type, request_data, priority, max_attempts, timeout]
    if concurrency_key is not None:
        fields.append(concurrency_key)
    if extras:
        fields.append(extras)
    payload = _encode(fields, order="sorted")
    return uuid.uuid5(uuid.NAMESPACE_OID, payload.decode()).hex


def check_idempotent_replay(key: str, job_id: str, stored_fingerprint: str | None, fingerprint: str) -> None:
    if stored_fingerprint != fingerprint:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was already used for a different request (job {job_id})"
        )


def new_job(
    job_type: str,
    encoded_request: bytes | None,
    priority: int,
    max_attempts: int,
    now: float,
    due: float,
    timeout: float | None,
    concurrency_key: str | None = None,
    trace_context: dict[str, str] | None = None,
) -> Job:
    """A job without idempotency key as it is stored: what ``RETURNING *`` would give, built in
    Python so the insert needs no row back (nothing can conflict with a fresh id)."""
    created = datetime.fromtimestamp(now, UTC)
    return Job(
        id=str(uuid.uuid4()),
        status=JobStatus.QUEUED,
        progress=0,
        job_type=job_type,
        priority=priority,
        # Decoded back from the stored JSON, so the job is what a later read returns (and does
        # not share the caller's mutable dict).
        request_data=None if encoded_request is None else msgspec.json.decode(encoded_request),
        result_data=None,
        message=None,
        error=None,
        created_at=created,
        updated_at=created,
        started_at=None,
        completed_at=None,
        worker_id=None,
        attempts=0,
        max_attempts=max_attempts,
        run_at=created if due == now else datetime.fromtimestamp(due, UTC),
        timeout=timeout,
        lease_expires_at=None,
        cancel_requested=False,
        idempotency_key=None,
        event_seq=1,
        concurrency_key=concurrency_key,
        trace_context=trace_context,
    )


class Dependencies(NamedTuple):
    """What a new job waits for: the ids of its dependencies (distinct) and its policy."""

    ids: list[str]
    on_failure: str

    def encoded(self) -> str:
        return _encode(self.ids).decode()


class UniqueKey(NamedTuple):
    """A new job's unique key, and whether the request debounces: then a repeat while the
    key's job still waits replaces its request_data and run_at (the new job's own run_at)."""

    key: str
    debounced: bool


def option_columns(dependencies: Dependencies | None, unique: UniqueKey | None) -> dict[str, Any]:
    """The insert's parameters for the columns of these options (both stores' ``insert_job``):
    its first status, which the store changes to ``blocked`` from the dependencies' statuses."""
    return {
        "status": JobStatus.QUEUED.value,
        "depends_on": None if dependencies is None else dependencies.encoded(),
        "on_dependency_failure": None if dependencies is None else dependencies.on_failure,
        "unique_key": None if unique is None else unique.key,
    }


def create_extras(dependencies: Dependencies | None, unique: UniqueKey | None) -> dict[str, Any]:
    """The options of a create request beyond the seed's, for its ``fingerprint``."""
    extras: dict[str, Any] = {}
    if dependencies is not None:
        extras["depends_on"] = dependencies.ids
        extras["on_dependency_failure"] = dependencies.on_failure
    if unique is not None:
        extras["unique_key"] = unique.key
        extras["debounced"] = unique.debounced
    return extras


def unknown_dependencies(asked: list[str], found: set[str]) -> ValidationFailed | None:
    missing = [job_id for job_id in asked if job_id not in found]
    if not missing:
        return None
    return ValidationFailed(f"depends_on names unknown jobs: {', '.join(missing)}", "depends_on")


def dependency_failure_message(job_id: str, status: str) -> str:
    """Why a dependent was cancelled: the dependency that did not complete, and how it ended."""
    how = "failed" if status == JobStatus.FAILED.value else "was cancelled"
    return f"dependency {job_id} {how}"


def initial_status(deps: Dependencies, statuses: dict[str, str]) -> tuple[str, str | None]:
    """The status to insert a new job with dependencies in (``queued``, or ``blocked`` while
    some have not finished), from their statuses read (locked) in the insert's transaction; and
    the message to cancel it with right after, when a dependency already failed under the
    ``cancel`` policy. A dependency missing from ``statuses`` was deleted after it finished,
    and counts as finished."""
    for job_id in deps.ids:
        status = statuses.get(job_id)
        if deps.on_failure == "cancel" and status in _UNSUCCESSFUL:
            return JobStatus.BLOCKED.value, dependency_failure_message(job_id, status)
    if any(status not in TERMINAL_VALUES for status in statuses.values()):
        return JobStatus.BLOCKED.value, None
    return JobStatus.QUEUED.value, None


class UpdatePlan(NamedTuple):
    """How an unfenced update (``PUT``, the seed's ``update_job``) changes a job."""

    #: The new status when it changes, else None.
    status: JobStatus | None
    progress: int | None
    becomes_active: bool
    leaves_active: bool
    becomes_waiting: bool
    becomes_terminal: bool
    #: The job's claim survives the change (its holder sent the token and the job stays held);
    #: otherwise the claim token is cleared, so a holder fenced out cannot write any more.
    keeps_claim: bool
    kind: EventKind


class Holder(NamedTuple):
    """The claim on a job as read under the write lock, with the row that ``plan_update`` checks."""

    claim_token: str | None
    lease_held: bool
    worker_id: str | None

    def holds(self, status: JobStatus) -> bool:
        """A worker holds the job: it runs under a claim whose token only that worker knows.

        A job made active by an unfenced update has no claim token: nobody holds it, and further
        unfenced updates drive it (the seed's simple workers). A lease that lapsed still holds the
        job until the reaper requeues it, as for every fenced write.
        """
        return status in ACTIVE_STATUSES and self.claim_token is not None and self.lease_held


def plan_update(
    job_id: str,
    old: JobStatus,
    update: JobUpdate,
    fields: set[str],
    holder: Holder,
    *,
    force: bool = False,
) -> UpdatePlan:
    """Check an unfenced update against the job's current status and claim (read under the
    write lock, in the transaction that applies the plan).

    A held job changes only with its holder's ``claim_token`` (refused otherwise: ``JobHeld``),
    or with ``force``, which fences the holder out: its token stops working at once.
    """
    if old in TERMINAL_STATUSES:
        raise InvalidTransition(
            f"job {job_id} is {old.value}: a finished job cannot be changed "
            "(retry it to run it again)"
        )
    if "status" in fields and update.status is JobStatus.BLOCKED and old is not JobStatus.BLOCKED:
        raise InvalidTransition(
            f"job {job_id} cannot be made blocked: only a job created with depends_on waits "
            "for its dependencies"
        )
    held = holder.holds(old)
    token = update.claim_token if "claim_token" in fields else None
    if token is not None and not (held and token == holder.claim_token):
        raise lease_lost(
            job_id, old.value, holder.claim_token, holder.lease_held, holder.worker_id, token
        )
    if held and token is None and not force:
        raise JobHeld(
            f"job {job_id} is held by worker {holder.worker_id}: send its claim_token, cancel "
            "the job, or force the change (an admin's ?force=true fences the worker out)"
        )
    new = update.status if "status" in fields and update.status is not None else old
    changed = new != old
    progress = update.progress if "progress" in fields else None
    if new is JobStatus.COMPLETED:
        progress = 100
    if changed:
        kind = status_kind(new)
    elif fields & {"progress", "message"}:
        kind = EventKind.PROGRESS
    else:
        kind = EventKind.UPDATED
    becomes_waiting = changed and new in WAITING_STATUSES and old not in WAITING_STATUSES
    return UpdatePlan(
        status=new if changed else None,
        progress=progress,
        becomes_active=changed and new in ACTIVE_STATUSES and old not in ACTIVE_STATUSES,
        leaves_active=changed and old in ACTIVE_STATUSES and new not in ACTIVE_STATUSES,
        becomes_waiting=becomes_waiting,
        becomes_terminal=changed and new in TERMINAL_STATUSES,
        keeps_claim=token is not None and not becomes_waiting,
        kind=kind,
    )


def completion_replayed(
    status: str, claim_token: str | None, stored_result: Any, token: str, result: Any
) -> bool:
    """A refused completion repeats the one that finished the job (a holder re-sending after a
    lost response): same claim, same result. Anything else was not applied and must not
    answer as if it had been."""
    return status == JobStatus.COMPLETED.value and claim_token == token and stored_result == result


def status_kind(new: JobStatus) -> EventKind:
    """The event of a status change made through an unfenced update."""
    if new is JobStatus.COMPLETED:
        return EventKind.COMPLETED
    if new is JobStatus.FAILED:
        return EventKind.FAILED
    if new is JobStatus.CANCELLED:
        return EventKind.CANCELLED
    if new in WAITING_STATUSES:
        return EventKind.REQUEUED
    return EventKind.STATUS


def fenced_kind(status: str, kind: EventKind) -> EventKind:
    """The event of a fenced write that left the job in ``status`` (a failed attempt that goes
    back to the queue is a requeue, not a failure)."""
    return EventKind.REQUEUED if status in WAITING_VALUES else kind


def event_data(kind: EventKind, result: Any, error: str | None) -> Any:
    """What an event carries besides status and progress: the result, or the error."""
    if kind is EventKind.COMPLETED:
        return result
    if kind in (EventKind.FAILED, EventKind.REQUEUED) and error is not None:
        return {"error": error}
    return None


def lease_lost(job_id: str, status: str, claim_token: str | None, lease_held: bool, worker_id: str | None, token: str) -> LeaseLost:
    """Why a fenced write found no row to change, from the job as it is now."""
    if claim_token == token and not lease_held:
        return LeaseLost(f"job {job_id} is already {status}; this claim has ended")
    if lease_held:
        return LeaseLost(
            f"job {job_id} is now held by another claim (worker {worker_id}); "
            "this claim expired and was taken over"
        )
    return LeaseLost(f"job {job_id} is {status}; this claim is no longer valid")


def cannot_cancel(job_id: str, status: str | None) -> Exception:
    if status is None:
        return JobNotFound(job_id)
    return InvalidTransition(f"job {job_id} is {status}: it cannot be cancelled")


def cannot_retry(job_id: str, status: str | None) -> Exception:
    if status is None:
        return JobNotFound(job_id)
    return InvalidTransition(
        f"job {job_id} is {status}: only failed or cancelled jobs can be retried"
    )


def cannot_delete(job_id: str, status: str | None) -> Exception:
    if status is None:
        return JobNotFound(job_id)
    return InvalidTransition(f"job {job_id} is {status}: only finished jobs can be deleted")


class BatchPlan(NamedTuple):
    """What a batch of new jobs does, decided from the jobs stored with its idempotency keys
    (read in the transaction that then applies the plan)."""

    #: Indexes of the items to insert.
    inserts: list[int]
    #: Index -> the stored row its idempotency key replays.
    replays: dict[int, Any]
    #: Index -> the earlier index of the batch with the same key and request (a replay of it).
    repeats: dict[int, int]
    #: Index -> why the item is refused.
    errors: dict[int, JobQueueError]
    #: Index -> fingerprint, for the items with an idempotency key.
    fingerprints: dict[int, str]


def plan_batch(items: Sequence[Any], stored: dict[str, tuple[str, str | None, Any]]) -> BatchPlan:
    """Plan a batch of ``NewJob`` items; ``stored`` maps each of their idempotency keys already
    in use to (job id, stored fingerprint, row). A key is a replay exactly as for one job."""
    plan = BatchPlan([], {}, {}, {}, {})
    first_with_key: dict[str, int] = {}
    for index, item in enumerate(items):
        key = item.idempotency_key
        if key is None:
            plan.inserts.append(index)
            continue
        mark = fingerprint(
            item.job_type, item.request_data, item.priority, item.max_attempts, item.timeout,
            concurrency_key=item.concurrency_key,
        )  # fmt: skip
        plan.fingerprints[index] = mark
        try:
            if key in stored:
                job_id, stored_mark, row = stored[key]
                check_idempotent_replay(key, job_id, stored_mark, mark)
                plan.replays[index] = row
            elif key in first_with_key:
                earlier = first_with_key[key]
                check_idempotent_replay(key, f"#{earlier} of this batch", plan.fingerprints[earlier], mark)
                plan.repeats[index] = earlier
            else:
                first_with_key[key] = index
                plan.inserts.append(index)
        except IdempotencyConflict as exc:
            plan.errors[index] = exc
    return plan


def settle_known(outcomes: list[Any], plan: BatchPlan) -> None:
    """Fill in the outcomes a batch plan knows before inserting: refusals and stored replays."""
    for index, error in plan.errors.items():
        outcomes[index] = error
    for index, row in plan.replays.items():
        outcomes[index] = (row, False)


def held_by_worker(held: Sequence[tuple[str, str, int]]) -> dict[str, tuple[int, list[str]]]:
    """(worker id, job id, held count) rows -> worker id -> (held count, job ids shown)."""
    grouped: dict[str, tuple[int, list[str]]] = {}
    for worker_id, job_id, count in held:
        grouped.setdefault(worker_id, (count, []))[1].append(job_id)
    return grouped


# -- searching ----------------------------------------------------------------------------------

#: Shortest id prefix a search accepts: shorter ones match too much to be worth a query.
MIN_ID_PREFIX = 4
#: What an id prefix may hold: the characters of the ids the service issues (UUIDs) and a few
#: more, so a mistyped prefix is refused rather than searched for.
ID_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{%d,64}" % MIN_ID_PREFIX)
#: Most ``data.<field>=<value>`` filters one listing takes.
MAX_DATA_FILTERS = 4
#: Longest value a ``data.<field>`` filter compares with.
MAX_DATA_VALUE = 200
#: A top-level field of request_data a filter may name: an identifier, so the stores can build
#: their JSON path from it without quoting (it is still bound as a parameter, never formatted).
DATA_FIELD_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
#: Integers beyond SQLite's 64 bits are compared as floats.
_INT64 = 2**63


class DataFilter(NamedTuple):
    """``data.<field>=<value>``: the job's ``request_data[field]`` is the string ``value``, or a
    number equal to ``value`` read as a number (``data.n=7`` matches ``{"n": 7}`` and ``{"n": "7"}``)."""

    field: str
    value: str
    #: ``value`` read as a JSON number, or None when it is not one.
    number: int | float | None


def data_filter(field: str, value: str) -> DataFilter:
    """Check one ``data.<field>=<value>`` filter (``ValidationFailed`` naming ``data.<field>``)."""
    name = f"data.{field}"
    if not DATA_FIELD_PATTERN.fullmatch(field):
        raise ValidationFailed(
            f"{name!r}: the field must be a top-level name of request_data (letters, digits and _, "
            "not starting with a digit, at most 64 characters)",
            name,
        )
    if not 1 <= len(value) <= MAX_DATA_VALUE:
        raise ValidationFailed(f"{name} must be 1 to {MAX_DATA_VALUE} characters", name)
    number: int | float | None = None
    shape = _JSON_NUMBER.fullmatch(value)
    if shape is not None:
        if shape.group(1) is None and shape.group(2) is None and abs(int(value)) < _INT64:
            number = int(value)
        elif math.isfinite(float(value)):
            number = float(value)
    return DataFilter(field, value, number)


def check_id_prefix(prefix: str) -> str:
    if not ID_PREFIX_PATTERN.fullmatch(prefix):
        raise ValidationFailed(
            f"id_prefix must be {MIN_ID_PREFIX} to 64 letters, digits or any of _ . : -", "id_prefix"
        )
    return prefix


def prefix_range_end(prefix: str) -> str:
    """The least string above every string that starts with ``prefix``, in code point order (an
    index range ``prefix <= id < end`` finds exactly the ids starting with it)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def like_prefix(prefix: str) -> str:
    r"""A LIKE pattern (``ESCAPE '\'``) matching what starts with ``prefix``, its wildcards escaped."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
