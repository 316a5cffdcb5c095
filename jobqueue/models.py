"""Domain types: job statuses, the job record and the shapes of the HTTP contract.

Every type here is a msgspec Struct, so the same definitions validate request bodies, encode
responses and (later) describe the API; nothing converts between parallel model hierarchies.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType


class JobStatus(str, enum.Enum):
    """Where a job is in its life. Stored as the lowercase string value."""

    #: Waiting to be claimed by a worker (the status of a new job).
    QUEUED = "queued"
    #: Waiting, set explicitly by a client that wants to mark a job as not yet started.
    #: Claimable exactly like ``queued``.
    PENDING = "pending"
    #: Claimed by a worker, running.
    PROCESSING = "processing"
    #: Generator-specific running states a handler may report while it works.
    LOADING_MODEL = "loading_model"
    PREPARING_PROMPT = "preparing_prompt"
    GENERATING_AUDIO = "generating_audio"
    EXPORTING = "exporting"
    ANALYZING = "analyzing"
    RENDERING = "rendering"
    #: Finished successfully; ``result_data`` holds the output and progress is 100.
    COMPLETED = "completed"
    #: Finished unsuccessfully; ``error`` says why.
    FAILED = "failed"
    #: Stopped on request before it finished, or because a job it depends on did not complete.
    CANCELLED = "cancelled"
    #: Waiting for the jobs it depends on (``depends_on``) to finish; not claimable until then,
    #: when it becomes ``queued`` (or ``cancelled`` when one of them failed).
    BLOCKED = "blocked"


#: Statuses of a job that waits for a worker; both are claimable once the job is due.
WAITING_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.PENDING})
#: Statuses of a job a worker holds (and whose lease it must keep renewing).
ACTIVE_STATUSES: frozenset[JobStatus] = frozenset(
    {
        JobStatus.PROCESSING,
        JobStatus.LOADING_MODEL,
        JobStatus.PREPARING_PROMPT,
        JobStatus.GENERATING_AUDIO,
        JobStatus.EXPORTING,
        JobStatus.ANALYZING,
        JobStatus.RENDERING,
    }
)
#: Statuses of a job not started yet: the claimable ones and ``blocked``.
NOT_STARTED_STATUSES: frozenset[JobStatus] = WAITING_STATUSES | {JobStatus.BLOCKED}
#: Statuses a job never leaves except through an explicit retry.
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)

#: The value of a running status (one of ``ACTIVE_STATUSES``), where only those are accepted.
RunningStatus = Literal[
    "processing", "loading_model", "preparing_prompt", "generating_audio", "exporting", "analyzing", "rendering"
]

#: Where the OpenAPI document defines the free-form JSON of a job (see ``JSONData``).
JSON_DATA_REF = "#/components/schemas/JSONData"
#: A job's free-form data (request_data, result_data): any JSON within the limits the API
#: enforces (nesting and integer size, api/limits.py), which the schema of that name states.
JSONData = Annotated[Any, msgspec.Meta(extra_json_schema={"$ref": JSON_DATA_REF})]

JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: Printable text, not only whitespace: a job type is shown in logs, metrics labels and pages,
#: where control characters (NUL included) corrupt or hide what is displayed.
JobType = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=100,
        pattern=r"^[^\S\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
    ),
]
Progress = Annotated[int, msgspec.Meta(ge=0, le=100)]
Priority = Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
Attempts = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=7 * 24 * 3600)]
Delay = Annotated[float, msgspec.Meta(ge=0, le=365 * 24 * 3600)]
Message = Annotated[str, msgspec.Meta(max_length=10_000)]
WorkerId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ConcurrencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: Most jobs one job may depend on.
MAX_DEPENDENCIES = 100
#: What a job does when a job it depends on fails or is cancelled: end ``cancelled`` with a
#: message naming that job (the default), or run anyway once all of them finished.
DependencyFailurePolicy = Literal["cancel", "run"]
UniqueKey = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: Longest debounce window, in seconds.
MAX_DEBOUNCE_SECONDS = 24 * 3600


class Job(msgspec.Struct, kw_only=True):
    """A job as stored and as returned by the API. Timestamps are UTC."""

    id: str
    status: JobStatus
    progress: int
    job_type: str
    priority: int
    request_data: Any
    result_data: Any
    message: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    worker_id: str | None
    attempts: int
    max_attempts: int
    run_at: datetime
    timeout: float | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    idempotency_key: str | None
    #: Sequence number of the job's latest event (resume its event stream after this).
    event_seq: int = 0
    #: The partition (a tenant, a user) the type's ``max_running_per_key`` counts it in.
    concurrency_key: str | None = None
    #: When the current (or last) attempt started; ``started_at`` is the first attempt's start.
    attempt_started_at: datetime | None = None
    #: The ids of the jobs it waits for (null: none); see ``JobCreate.depends_on``.
    depends_on: list[str] | None = None
    #: What it does when one of ``depends_on`` fails or is cancelled (null: no dependencies).
    on_dependency_failure: DependencyFailurePolicy | None = None
    #: At most one unfinished job has this key; see ``JobCreate.unique_key``.
    unique_key: str | None = None
    #: The trace context it was enqueued in (``traceparent``, ``tracestate``), with the ``otel``
    #: extra; each attempt's span links to it (a remote worker can link its own spans too).
    trace_context: dict[str, str] | None = None


class ClaimedJob(msgspec.Struct, kw_only=True):
    """A job handed to a worker, with the token that proves it holds the current claim."""

    job: Job
    claim_token: str


class JobCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/jobs``."""

    job_type: JobType
    request_data: dict[str, JSONData] | None = None
    priority: Priority = 0
    max_attempts: Attempts | None = None
    #: Seconds one attempt may run before it is cancelled and counted as failed.
    timeout: Seconds | None = None
    #: Do not run before this instant (ISO 8601; a naive value is taken as UTC).
    run_at: datetime | None = None
    #: Do not run before this many seconds from now (exclusive with ``run_at``).
    delay: Delay | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    #: A tenant, user or other partition of the type's jobs: with the type's
    #: ``max_running_per_key``, at most that many jobs of one key run at once.
    concurrency_key: ConcurrencyKey | None = None
    #: Jobs that must finish first: the job is ``blocked`` until all of them completed.
    depends_on: Annotated[list[JobId], msgspec.Meta(min_length=1, max_length=MAX_DEPENDENCIES)] | None = None
    #: When one of ``depends_on`` fails or is cancelled: ``cancel`` this job too (default), or
    #: ``run`` it anyway once all of them finished.
    on_dependency_failure: DependencyFailurePolicy | None = None
    #: At most one unfinished job per key: a repeat answers the existing job (200, header
    #: ``Jobqueue-Deduplicated: true``) instead of queueing another.
    unique_key: UniqueKey | None = None
    #: Seconds to wait for a repeat (requires ``unique_key``): the job runs this long after the
    #: last request, and a repeat while it still waits replaces its ``request_data``.
    debounce: Annotated[float, msgspec.Meta(gt=0, le=MAX_DEBOUNCE_SECONDS)] | None = None


class JobUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A change of a job (``PUT /api/jobs/{id}``): every field optional, the given ones change."""

    status: JobStatus | None = None
    progress: Progress | None = None
    message: Message | None = None
    result_data: Any = None
    error: Message | None = None
    worker_id: WorkerId | None = None
    #: The holder's claim token: required to change a job a worker holds (else 409 ``job_held``).
    claim_token: str | None = None


class ProgressUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/jobs/{id}/progress``."""

    progress: Progress
    message: Message | None = None
    #: Optional running status to report with the progress (for instance ``rendering``).
    status: RunningStatus | None = None
    #: When given, the update is fenced: it is refused unless this is the current claim.
    claim_token: str | None = None


#: Longest traceback kept with an attempt, in characters; a longer one keeps its first line and
#: its end (the innermost frames and the exception), which is where the cause is.
MAX_TRACEBACK_CHARS = 16_000


class Attempt(msgspec.Struct, kw_only=True):
    """One attempt at a job, as ``GET /api/jobs/{id}/attempts`` lists it."""

    attempt: int
    worker_id: str | None
    started_at: datetime | None
    #: None while the attempt runs.
    ended_at: datetime | None
    #: ``running``, ``completed``, ``failed`` (retried or not: see the job) or ``cancelled``.
    outcome: Literal["running", "completed", "failed", "cancelled"]
    error: str | None = None
    traceback: str | None = None


class AttemptList(msgspec.Struct, kw_only=True):
    job_id: str
    attempts: list[Attempt]


class JobRef(msgspec.Struct, kw_only=True):
    """What ``POST /api/jobs`` answers with ``Prefer: return=minimal``: the new job's id and status."""

    id: str
    status: JobStatus


class JobList(msgspec.Struct, kw_only=True):
    """One page of ``GET /api/jobs``."""

    items: list[Job]
    total: int
    limit: int
    offset: int


class JobStats(msgspec.Struct, kw_only=True):
    """Counts and timings of ``GET /api/jobs/stats``."""

    total: int
    by_status: dict[str, int]
    job_type: str | None = None
    #: Mean seconds from creation to first start, over jobs that started.
    avg_wait_seconds: float | None = None
    #: Mean seconds from start to finish, over finished jobs.
    avg_run_seconds: float | None = None
    #: Waiting jobs that are due now.
    ready: int = 0
    #: Waiting jobs scheduled for later (delayed or backing off before a retry).
    scheduled: int = 0
    oldest_waiting_at: datetime | None = None
    #: Job types with waiting jobs that no live worker pool serves (a typo in a type, or the
    #: pools of that type are all down): their jobs would wait forever in silence.
    unserved_types: list[str] = msgspec.field(default_factory=list)


#: The percentiles ``GET /api/stats/timings`` reports, in the order of ``Percentiles``' fields.
TIMING_PERCENTILES = (0.5, 0.95, 0.99)
#: Most finished jobs the timing percentiles are computed from (the most recently finished of
#: the window): the work of one request stays bounded however busy the window was.
TIMINGS_SAMPLE = 10_000
#: Longest window of ``GET /api/stats/timings``, in seconds (a week).
MAX_TIMINGS_WINDOW = 7 * 86400


class Percentiles(msgspec.Struct):
    """Seconds at the 50th, 95th and 99th percentile (``TIMING_PERCENTILES``, in this order),
    interpolated between the two nearest values as PostgreSQL's ``percentile_cont`` does."""

    p50: float
    p95: float
    p99: float


class TypeTimings(msgspec.Struct, kw_only=True):
    """Wait and run time percentiles of one job type's jobs finished in the window."""

    job_type: str
    #: Jobs the figures come from: finished in the window, after having started.
    count: int
    #: From creation to start.
    wait: Percentiles
    #: From start to finish.
    run: Percentiles


class Timings(msgspec.Struct, kw_only=True):
    """``GET /api/stats/timings``: percentiles per job type, by name."""

    #: Seconds back from now the jobs finished in.
    window: float
    items: list[TypeTimings]
    #: True when the window held ``TIMINGS_SAMPLE`` jobs or more: the figures are those of the
    #: most recently finished ``TIMINGS_SAMPLE``.
    sampled: bool


# -- worker pools you can see ------------------------------------------------------------------

#: Most ids of held jobs listed per worker (the count is always exact).
HELD_JOB_IDS_SHOWN = 20


class WorkerRegistration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PUT /api/workers/{id}``: a pool announcing itself, sent again as its heartbeat."""

    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    pid: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    #: The job types the pool claims.
    job_types: Annotated[list[JobType], msgspec.Meta(min_length=1, max_length=1000)]
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    #: Seconds the registration stays live without another heartbeat.
    ttl: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 15.0


class Worker(msgspec.Struct, kw_only=True):
    """A live worker pool (``GET /api/workers``); it disappears when it stops, or once its
    heartbeat lapses (``expires_at``)."""

    id: str
    host: str
    pid: int
    job_types: list[str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    #: Jobs the pool holds now (claimed, lease not ended).
    held_jobs: int = 0
    #: The ids of up to ``HELD_JOB_IDS_SHOWN`` of them, longest held first.
    held_job_ids: list[str] = msgspec.field(default_factory=list)


class WorkerList(msgspec.Struct, kw_only=True):
    items: list[Worker]
    #: Job types with waiting jobs that none of these workers serves.
    unserved_types: list[str]


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The single shape of every error response."""

    error: str
    detail: str
    field: str | None = None


# -- bulk operations ----------------------------------------------------------------------------

#: Most jobs one ``POST /api/jobs/batch`` creates.
MAX_BATCH_JOBS = 1000
#: Most jobs one bulk retry, cancel or purge changes (and its default limit).
MAX_BULK_JOBS = 1000


class BatchCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/jobs/batch``. Each item has the shape of ``JobCreate`` and is checked
    on its own, so one bad item is reported by its index instead of refusing the request."""

    #: Each a ``JobCreate`` body (the OpenAPI document says so).
    jobs: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=MAX_BATCH_JOBS)]
    #: All or nothing: any refused item refuses the batch (422) and nothing is stored. By
    #: default the valid items are stored and the refused ones reported.
    atomic: bool = False


class BatchItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The outcome of one item of a batch: its job, or why it was refused."""

    index: int
    job: Job | None = None
    #: False: an idempotent replay (the job an earlier request with its key created).
    created: bool | None = None
    error: ErrorBody | None = None


class BatchResult(msgspec.Struct, kw_only=True):
    """Answer of ``POST /api/jobs/batch``: one item per job sent, in order."""

    items: list[BatchItem]
    created: int
    existing: int
    refused: int


class BatchRefusedBody(msgspec.Struct, kw_only=True):
    """The 422 of an atomic batch with refused items: the error shape plus each item's error."""

    error: str
    detail: str
    items: list[BatchItem]


class BulkResult(msgspec.Struct, kw_only=True):
    """Answer of a bulk retry, cancel or purge: how many jobs it changed, and whether more match
    (call again to go on)."""

    affected: int
    more: bool
    job_ids: list[str]


class EventKind(str, enum.Enum):
    """What happened to a job. The ``kind`` of a ``JobEvent`` and the SSE ``event:`` name."""

    #: The job was enqueued.
    CREATED = "created"
    #: A worker claimed it, or it moved to another running status, or (status ``queued``) the
    #: jobs it depended on finished and it left ``blocked`` for the queue.
    STATUS = "status"
    #: Progress or message changed (status unchanged).
    PROGRESS = "progress"
    #: It went back to the queue: a failed attempt to be retried, an expired lease, a hand-back.
    REQUEUED = "requeued"
    #: A cancel of the running job was requested; the worker stops it shortly.
    CANCEL_REQUESTED = "cancel_requested"
    #: A finished job was put back in the queue by a retry request.
    RETRIED = "retried"
    #: Some other field changed through ``PUT`` (result, error, worker), or a debounced repeat
    #: replaced its request_data and run_at.
    UPDATED = "updated"
    #: Terminal events: the stream of the job ends after one of these.
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_EVENT_KINDS: frozenset[EventKind] = frozenset(
    {EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED}
)


class JobEvent(msgspec.Struct, kw_only=True):
    """One change of one job, as stored in ``job_events`` and sent to listeners."""

    #: Global, increasing id (the SSE id of the all-jobs stream).
    id: int
    #: Per-job sequence number 1, 2, 3... (the SSE id of the job's stream).
    seq: int
    job_id: str
    job_type: str
    kind: EventKind
    status: JobStatus
    progress: int
    message: str | None
    #: The result on ``completed``; ``{"error": ...}`` on ``failed`` and ``requeued`` after an error.
    data: Any
    at: datetime

    @property
    def signals_new_work(self) -> bool:
        """Whether this event put a job in the queue: created, retried, requeued, or unblocked
        (its dependencies finished: a ``status`` event to ``queued``, since it enters the queue
        for the first time rather than going back to it). Idle worker pools wake up on these;
        the stores' ``new_work_events_by_ids`` query makes the same test in SQL."""
        return self.kind in _NEW_WORK_KINDS or (self.kind is EventKind.STATUS and self.status is JobStatus.QUEUED)


_NEW_WORK_KINDS = frozenset({EventKind.CREATED, EventKind.RETRIED, EventKind.REQUEUED})


class KeyScope(str, enum.Enum):
    """What an API key may do. ``admin`` includes every other scope."""

    #: Everything: managing keys, operator changes (PUT, cancel, retry, delete, forced changes).
    ADMIN = "admin"
    #: Create jobs, and read the jobs it may see (get, list, a job's stream, wait).
    ENQUEUE = "enqueue"
    #: The remote-worker protocol: claim, heartbeat, progress, complete, fail, release, and
    #: confirming a requested cancel; every one of them also fenced by the claim token.
    WORKER = "worker"
    #: Read everything: GETs, streams, stats, the dashboard, the docs, ``/ready`` and ``/metrics``.
    READ = "read"


KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]


class ApiKey(msgspec.Struct, kw_only=True):
    """An API key as listed: never its secret, which is shown once, when it is created."""

    id: str
    name: str
    scopes: list[KeyScope]
    #: The job types the key may touch; None: every type.
    job_types: list[str] | None
    created_at: datetime
    #: Updated at most once a minute.
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /api/keys``."""

    name: KeyName
    scopes: Annotated[list[KeyScope], msgspec.Meta(min_length=1)]
    #: Limit the key to these job types (403 for others); omitted: every type.
    job_types: Annotated[list[JobType], msgspec.Meta(min_length=1)] | None = None


class CreatedApiKey(ApiKey, kw_only=True):
    """A new key, with its secret: the only time the secret is shown."""

    key: str


class ApiKeyList(msgspec.Struct, kw_only=True):
    items: list[ApiKey]


class ApiSession(msgspec.Struct, kw_only=True):
    """A browser's login, as stored: the key it was made with (None: the bootstrap key)."""

    key: ApiKey | None
    bootstrap_proof: str | None
    expires_at: datetime


# -- periodic jobs -------------------------------------------------------------------------------


class MissedTicks(str, enum.Enum):
    """What a scheduler does with the ticks of a schedule that no scheduler fired in time (all
    schedulers were down, or the schedule's clock lay in the past when it was written)."""

    #: No job for them: the next tick is the next future one.
    SKIP = "skip"
    #: One job for all of them, once, then on as usual.
    CATCH_UP = "catch_up"


#: A schedule's name: part of URLs and of its jobs' idempotency keys.
ScheduleName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]
#: Seconds between the ticks of an interval schedule (at least one second, at most a year).
Every = Annotated[float, msgspec.Meta(ge=1, le=366 * 24 * 3600)]


class ScheduleSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a schedule does: the body of ``PUT /api/schedules/{name}`` and of
    ``Registry.schedule``. Exactly one of ``cron`` and ``every``."""

    job_type: JobType
    #: A cron expression of 5 fields (minute hour day month weekday), or 6 with seconds first,
    #: read in ``timezone``.
    cron: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    #: Seconds between ticks, counted from the Unix epoch (``every: 3600`` ticks on the hour, UTC).
    every: Every | None = None
    #: An IANA time zone name (``Europe/Paris``): the zone the cron expression is read in.
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "UTC"
    request_data: dict[str, JSONData] | None = None
    priority: Priority = 0
    max_attempts: Attempts | None = None
    timeout: Seconds | None = None
    missed: MissedTicks = MissedTicks.SKIP


class Schedule(ScheduleSpec, kw_only=True, forbid_unknown_fields=False):
    """A stored schedule, as the API returns it. Timestamps are UTC."""

    name: str
    #: ``code`` (declared with ``Registry.schedule``, written when a worker starts) or ``api``.
    source: str
    #: Paused schedules make no jobs; resuming continues with the next future tick.
    paused: bool
    #: The tick the next job is for.
    next_run_at: datetime
    #: The tick of the latest job a scheduler made.
    last_run_at: datetime | None
    last_job_id: str | None
    created_at: datetime
    updated_at: datetime


class ScheduleList(msgspec.Struct, kw_only=True):
    items: list[Schedule]


# -- flow control per job type -------------------------------------------------------------------

#: Longest rate-limit period, in seconds (a day): the claim keeps one row per start of the window.
MAX_RATE_PERIOD = 24 * 3600.0


class RateLimit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """At most ``limit`` starts (claims) of the type in any window of ``period`` seconds."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    period: Annotated[float, msgspec.Meta(gt=0, le=MAX_RATE_PERIOD)]


class TypeControls(msgspec.Struct, kw_only=True):
    """The flow controls of one job type (``GET /api/job-types/{type}``), enforced by the claim
    in every process; a type nobody set controls for has none (all null, not paused)."""

    job_type: str
    #: Not claimed while paused; running jobs finish.
    paused: bool = False
    #: At most this many jobs of the type running at once, across all workers; null: no limit.
    max_running: int | None = None
    #: At most this many running jobs per ``concurrency_key``; null: no limit.
    max_running_per_key: int | None = None
    rate: RateLimit | None = None
    #: Jobs of the type held by a worker now.
    running: int = 0
    #: Jobs of the type per status (every status with at least one job).
    by_status: dict[str, int] = {}
    #: When the rate limit allows the next start; null: a start is allowed now (as far as the
    #: rate limit goes; ``max_running`` may still hold it back until a job finishes).
    next_start_at: datetime | None = None
    #: When the controls last changed; null: never set.
    updated_at: datetime | None = None


class TypeControlsList(msgspec.Struct, kw_only=True):
    """``GET /api/job-types``: every type with controls or with jobs, by name."""

    items: list[TypeControls]


class TypeControlsUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PATCH /api/job-types/{type}``: the fields sent change, null clears a limit."""

    paused: bool | UnsetType = UNSET
    max_running: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None | UnsetType = UNSET
    max_running_per_key: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None | UnsetType = UNSET
    #: ``{"limit": N, "period": seconds}``, or null for no rate limit.
    rate: RateLimit | None | UnsetType = UNSET
