"""``GET /openapi.json`` (OpenAPI 3.1) and ``GET /docs`` (an offline, interactive API page).

The document is built from the app's own routes and the msgspec types the endpoints decode and
encode (``msgspec.json.schema_components``), so a changed field or a new route shows up without
editing a copy. What a type cannot say (summaries, status codes, query parameters) is in
``OPERATIONS``, keyed by method and path; a route missing there is still listed, as
"undocumented", and the tests fail on it.

The docs page is a small self-written HTML/JS page in ``jobqueue/static`` served by the app, so
it works with no internet. (The PyPI bundles of Swagger UI were not a fit: swagger-ui-bundle
ships Swagger UI 4, which cannot render OpenAPI 3.1, and swagger-ui-py pulls in Jinja2 and
PyYAML and installs a top-level ``test`` package.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import jobqueue
from jobqueue.api.auth import requires
from jobqueue.api.examples import add_examples
from jobqueue.api.responses import JSONResponse
from jobqueue.api.routes import (
    MAX_OFFSET,
    CancelRequest,
    ClaimRequest,
    ClaimResponse,
    CompleteRequest,
    FailRequest,
    HeartbeatResponse,
    TokenRequest,
    UpdateRequest,
)
from jobqueue.api.limits import MAX_JSON_DEPTH, MAX_JSON_INTEGER
from jobqueue.api.sse import MAX_EVENT_ID, MAX_WAIT_SECONDS
from jobqueue.handlers.generation import MODELS, GenerateRequest
from jobqueue.models import (
    JSON_DATA_REF,
    MAX_BATCH_JOBS,
    MAX_BULK_JOBS,
    MAX_TIMINGS_WINDOW,
    TIMINGS_SAMPLE,
    ApiKey,
    ApiKeyCreate,
    ApiKeyList,
    AttemptList,
    BatchCreate,
    BatchRefusedBody,
    BatchResult,
    BulkResult,
    CreatedApiKey,
    ErrorBody,
    EventKind,
    Job,
    JobRef,
    JobCreate,
    JobEvent,
    JobList,
    JobStats,
    JobStatus,
    KeyScope,
    ProgressUpdate,
    Worker,
    WorkerList,
    WorkerRegistration,
    Schedule,
    ScheduleList,
    ScheduleName,
    ScheduleSpec,
    RateLimit,
    TypeControls,
    TypeControlsList,
    TypeControlsUpdate,
    Timings,
)
from jobqueue.service import MAX_PAGE_SIZE, TIMINGS_WINDOW_SECONDS
from jobqueue.storage.rules import ID_PREFIX_PATTERN, MAX_DATA_FILTERS, MAX_DATA_VALUE, MIN_ID_PREFIX

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{name}"

#: Every type the HTTP contract uses; each becomes a named schema in ``components``.
SCHEMA_TYPES: tuple[type, ...] = (
    JobCreate,
    UpdateRequest,
    ProgressUpdate,
    Job,
    JobRef,
    JobList,
    JobStats,
    Timings,
    JobEvent,
    ErrorBody,
    CancelRequest,
    ClaimRequest,
    ClaimResponse,
    TokenRequest,
    CompleteRequest,
    FailRequest,
    HeartbeatResponse,
    GenerateRequest,
    ApiKey,
    ApiKeyCreate,
    CreatedApiKey,
    ApiKeyList,
    BatchCreate,
    BatchResult,
    BatchRefusedBody,
    BulkResult,
    Worker,
    WorkerList,
    WorkerRegistration,
    RateLimit,
    TypeControls,
    TypeControlsList,
    TypeControlsUpdate,
    AttemptList,
    ScheduleSpec,
    Schedule,
    ScheduleList,
)

_ERROR_TEXT = {
    400: "Malformed request: JSON that does not parse or nests deeper than 64 levels, or a bad Last-Event-ID",
    401: "No API key, or an unknown or revoked one",
    403: "The key lacks the scope or the job type this needs, or the request came from another origin",
    404: "The job (or schedule) does not exist",
    409: "Not allowed in the job's current status, the job is held by a worker, or the claim is no longer current",
    413: "Body too large",
    415: "Body is not JSON",
    422: "A field is invalid",
    429: "This client has MAX_STREAMS_PER_CLIENT event streams open; retry after Retry-After seconds",
    503: "The database is unavailable",
}

_STREAM_DOC = (
    "Server-sent events (`text/event-stream`). Each message has `event: <kind>`, an `id:` and "
    "`data:` with the JSON of a `JobEvent` (see components). Comments (`: keep-alive`) keep the "
    "connection open. Reconnect with `Last-Event-ID` to replay what was missed."
)


def _stream_message(kinds: list[str], data: type) -> dict[str, Any]:
    """One message of an event stream, as OpenAPI 3.1 tools read the schema of
    ``text/event-stream``: an object of its fields, whose ``data`` holds JSON."""
    return {
        "type": "object",
        "required": ["event", "id", "data"],
        "properties": {
            "event": {"type": "string", "enum": kinds},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"$ref": REF.format(name=data.__name__)}},
        },
    }


_EVENT_MESSAGE = _stream_message([kind.value for kind in EventKind], JobEvent)


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    location: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    request: type | None = None
    response: type | dict[str, Any] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    description: str = ""
    #: Media type of a non-JSON success response, documented as a string.
    media_type: str | None = None
    extra_responses: dict[str, str] = field(default_factory=dict)


_JOB_ERRORS = (404, 422)
_HOLDER_ERRORS = (400, 404, 409, 415, 422)
_BODY_ERRORS = (400, 413, 415, 422)
_STATUS_PARAM = Param(
    "status",
    {"type": "array", "items": {"type": "string", "enum": [s.value for s in JobStatus]}},
    "Only jobs in these statuses (repeat the parameter, or separate with commas)",
)
_FREE_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
_BULK_LIMIT = Param(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_BULK_JOBS, "default": MAX_BULK_JOBS},
    "Most jobs this call changes",
)

def _last_event_id_params(description: str) -> tuple[Param, ...]:
    # A decimal integer; the header wins over the query parameter.
    schema = {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}
    return (
        Param("Last-Event-ID", schema, description, location="header"),
        Param("last_event_id", schema, "The same as the Last-Event-ID header, for clients that cannot set it"),
    )


_SCHEDULE_NAME = (
    Param(
        "name",
        msgspec.json.schema(ScheduleName),
        "The schedule's name: letters, digits and _.:@-, starting with a letter or digit",
        location="path",
        required=True,
    ),
)

#: (METHOD, path) -> what the endpoint does. Paths are Starlette's, which OpenAPI shares.
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/"): Operation("Service name, version and links", "service", response=_FREE_OBJECT),
    ("GET", "/health"): Operation(
        "Liveness: the process answers and its database file is usable",
        "service",
        response=_FREE_OBJECT,
        extra_responses={"503": "The database is unusable"},
    ),
    ("GET", "/ready"): Operation(
        "Readiness: the database answers; Redis (when configured) is checked and reported",
        "service",
        response=_FREE_OBJECT,
        extra_responses={"503": "The database does not answer"},
    ),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics of this process", "service", media_type="text/plain; version=0.0.4"
    ),
    ("GET", "/openapi.json"): Operation("This document", "service", response=_FREE_OBJECT),
    ("GET", "/docs"): Operation("Interactive API documentation (HTML)", "service", media_type="text/html"),
    ("GET", "/dashboard"): Operation("The live dashboard (HTML)", "service", media_type="text/html"),
    ("GET", "/dashboard/jobs/{job_id}"): Operation(
        "One job's live page (HTML): timeline, attempts with tracebacks, request and result, actions",
        "service",
        media_type="text/html",
    ),
    ("GET", "/dashboard/charts"): Operation(
        "Charts (HTML): throughput from the event stream, wait and run time percentiles per type",
        "service",
        media_type="text/html",
    ),
    ("GET", "/dashboard/workers"): Operation(
        "The live worker pools and the job types no live worker serves (HTML)", "service", media_type="text/html"
    ),
    ("POST", "/api/jobs"): Operation(
        "Queue a job",
        "jobs",
        request=JobCreate,
        # anyOf: a whole Job is a JobRef too.
        response={"anyOf": [{"$ref": REF.format(name="Job")}, {"$ref": REF.format(name="JobRef")}]},
        status=201,
        errors=_BODY_ERRORS,
        params=(
            Param(
                "Idempotency-Key",
                {"type": "string", "minLength": 1, "maxLength": 200},
                "Same as the body's idempotency_key",
                location="header",
            ),
            Param(
                "Prefer",
                {"type": "string"},
                "`return=minimal`: answer with the job's id and status only (a JobRef), with "
                "`Preference-Applied: return=minimal`; otherwise the whole job",
                location="header",
            ),
        ),
        extra_responses={
            "200": "An idempotent replay: the job the first request created; or, with header "
            "Jobqueue-Deduplicated: true, the unfinished job already holding the unique_key (a "
            "debounced request replaced its request_data and run_at if it was still waiting)"
        },
        description="When no live worker serves the job's type, the response carries "
        "`Warning: 199 jobqueue \"no live worker serves job type 'x'\"` (the body is unchanged).",
    ),
    ("GET", "/api/jobs"): Operation(
        "List jobs, newest first",
        "jobs",
        response=JobList,
        errors=(422,),
        params=(
            _STATUS_PARAM,
            Param("job_type", {"type": "string"}, "Only jobs of this type"),
            Param("worker_id", {"type": "string"}, "Only jobs held by this worker"),
            Param(
                "id_prefix",
                {"type": "string", "pattern": f"^{ID_PREFIX_PATTERN.pattern}$"},
                f"Only jobs whose id starts with this (case-sensitive, at least {MIN_ID_PREFIX} characters)",
            ),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 50}),
            Param("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}),
        ),
        description=(
            "**Filter on request_data** with `data.<field>=<value>` (up to "
            f"{MAX_DATA_FILTERS}, all must hold): the top-level `field` of the job's `request_data` "
            "is the string `value`, or a number equal to `value` read as a number, so "
            "`?data.user=ann&data.n=7` matches `{\"user\": \"ann\", \"n\": 7}` and "
            "`{\"user\": \"ann\", \"n\": \"7\"}`. A field is letters, digits and `_` (not "
            f"starting with a digit, at most 64); a value is 1 to {MAX_DATA_VALUE} characters. "
            "Nested fields, booleans and nulls are not matched. A bad filter is a 422 whose `field` "
            "names the parameter (`data.<field>`, or `data` for too many)."
        ),
    ),
    ("GET", "/api/jobs/stats"): Operation("Counts by status and mean timings", "jobs", response=JobStats),
    ("GET", "/api/jobs/stats/{job_type}"): Operation(
        "Counts by status and mean timings of one job type", "jobs", response=JobStats
    ),
    ("GET", "/api/stats/timings"): Operation(
        "Wait and run time percentiles (p50, p95, p99) per job type",
        "jobs",
        response=Timings,
        errors=(422,),
        params=(
            Param(
                "window",
                {"type": "integer", "minimum": 1, "maximum": MAX_TIMINGS_WINDOW, "default": int(TIMINGS_WINDOW_SECONDS)},
                "Seconds back from now: jobs finished within it count",
            ),
        ),
        description="Over jobs that started and finished (completed, failed or cancelled) within "
        f"the window, the most recent {TIMINGS_SAMPLE} at most (`sampled` says when the window "
        "held that many). Wait is creation to start, run is start to finish; percentiles are "
        "interpolated between the two nearest values. A key limited to job types sees those types.",
    ),
    ("GET", "/api/jobs/{job_id}"): Operation("Get a job", "jobs", response=Job, errors=(404,)),
    ("PUT", "/api/jobs/{job_id}"): Operation(
        "Change a job (operators and simple workers); only the fields sent change",
        "jobs",
        request=UpdateRequest,
        response=Job,
        errors=(404, 409, *_BODY_ERRORS),
        params=(
            Param(
                "force",
                {"type": "boolean", "default": False},
                "Change a job a worker holds without its claim token (admin only): the worker's "
                "token stops working at once",
            ),
        ),
        description="A job a worker holds changes only with its `claim_token` (else 409 `job_held`) "
        "or with `force=true`.\n\n"
        "- Without a `claim_token`, or with `force`, the **admin** scope is needed.\n"
        "- A field left out stays as it is; `null` clears `message`, `result_data`, `error` and `worker_id`.",
    ),
    ("GET", "/api/jobs/{job_id}/attempts"): Operation(
        "The job's attempts: worker, start, end, outcome, error and traceback of each",
        "jobs",
        response=AttemptList,
        errors=(404,),
        description="Oldest first. Attempts that failed or were cancelled are kept (the last 100); "
        "the running or completed attempt comes from the job itself. A retried job numbers its "
        "attempts from 1 again.",
    ),
    ("DELETE", "/api/jobs/{job_id}"): Operation(
        "Delete a finished job", "jobs", status=204, errors=(404, 409)
    ),
    ("POST", "/api/jobs/{job_id}/progress"): Operation(
        "Report progress (fenced when a claim_token is given)",
        "workers",
        request=ProgressUpdate,
        response=Job,
        errors=_HOLDER_ERRORS,
        description="Without a `claim_token`: `admin` only, and refused (409 `job_held`) while a worker holds the job.",
    ),
    ("POST", "/api/jobs/{job_id}/cancel"): Operation(
        "Cancel a job; a running job is stopped by its worker (who confirms with its claim_token)",
        "jobs",
        request=CancelRequest,
        response=Job,
        errors=_HOLDER_ERRORS,
        description="A cancel request needs `admin`; a worker confirming with its `claim_token` needs `worker`.",
    ),
    ("POST", "/api/jobs/{job_id}/retry"): Operation(
        "Queue a failed or cancelled job again", "jobs", response=Job, errors=(404, 409)
    ),
    ("GET", "/api/jobs/{job_id}/wait"): Operation(
        "Long-poll: the job as soon as it is finished, or as it is when the timeout passes",
        "events",
        response=Job,
        errors=_JOB_ERRORS,
        params=(
            Param(
                "timeout",
                {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 30},
                "Seconds to wait at most",
            ),
        ),
    ),
    ("GET", "/api/jobs/{job_id}/events"): Operation(
        "The job's live event stream: a `snapshot` (the Job), then each event until it finishes",
        "events",
        response={"oneOf": [_stream_message(["snapshot"], Job), _EVENT_MESSAGE]},
        errors=(400, 404, 429),
        media_type="text/event-stream",
        description=_STREAM_DOC + " Here `id:` is the job's event `seq`.",
        params=_last_event_id_params("Replay events with a seq above this one"),
    ),
    ("GET", "/api/events"): Operation(
        "Every job's live events",
        "events",
        response=_EVENT_MESSAGE,
        errors=(400, 422, 429),
        media_type="text/event-stream",
        description=_STREAM_DOC + " Here `id:` is the global event `id`.",
        params=(
            Param("job_type", {"type": "string"}, "Only events of this job type"),
            Param("status", _STATUS_PARAM.schema, "Only events leaving a job in these statuses"),
            *_last_event_id_params("Replay events with a global id above this one"),
        ),
    ),
    ("POST", "/api/jobs/{job_id}/heartbeat"): Operation(
        "Extend the claim's lease; says whether a cancel was requested",
        "workers",
        request=TokenRequest,
        response=HeartbeatResponse,
        errors=_HOLDER_ERRORS,
    ),
    ("POST", "/api/jobs/{job_id}/complete"): Operation(
        "Finish a claimed job with its result", "workers", request=CompleteRequest, response=Job, errors=_HOLDER_ERRORS
    ),
    ("POST", "/api/jobs/{job_id}/fail"): Operation(
        "Record a failed attempt (retried after a backoff while attempts remain)",
        "workers",
        request=FailRequest,
        response=Job,
        errors=_HOLDER_ERRORS,
    ),
    ("POST", "/api/jobs/{job_id}/release"): Operation(
        "Hand a claimed job back to the queue without counting the attempt",
        "workers",
        request=TokenRequest,
        response=Job,
        errors=_HOLDER_ERRORS,
    ),
    ("POST", "/api/workers/claim"): Operation(
        "Claim up to `limit` jobs (long-polls up to `wait` seconds)",
        "workers",
        request=ClaimRequest,
        response=ClaimResponse,
        errors=_BODY_ERRORS,
    ),
    # -- bulk operations (api/bulk.py) --
    ("POST", "/api/jobs/batch"): Operation(
        f"Queue up to {MAX_BATCH_JOBS} jobs in one transaction",
        "jobs",
        request=BatchCreate,
        response=BatchResult,
        errors=_BODY_ERRORS,
        description="Each item has the shape of `JobCreate` and is checked on its own. By default "
        "the valid items are stored and each refused one is reported with its `index` and `error` "
        "(items may carry idempotency keys, so resending the batch is safe). With `atomic: true` "
        "any refused item answers 422 `batch_refused` (a `BatchRefusedBody` listing the refused "
        "items) and nothing is stored. Each job created writes its `created` event. A `Warning: "
        "199` header names job types no live worker serves.",
    ),
    ("DELETE", "/api/jobs"): Operation(
        "Purge finished jobs (with their events), oldest first",
        "jobs",
        response=BulkResult,
        errors=(422,),
        params=(
            Param(
                "status",
                {"type": "array", "items": {"type": "string", "enum": ["completed", "failed", "cancelled"]}},
                "Purge jobs in these statuses (required; repeat the parameter, or separate with commas)",
                required=True,
            ),
            Param("job_type", {"type": "string"}, "Only jobs of this type"),
            Param("before", {"type": "string", "format": "date-time"}, "Only jobs finished before this instant"),
            _BULK_LIMIT,
        ),
        description="Bounded: `more` tells whether matching jobs remain (call again). Like a single "
        "DELETE, no event is written: a job's events go with it.",
    ),
    ("POST", "/api/job-types/{job_type}/retry-failed"): Operation(
        "Retry the failed jobs of a type, oldest failure first",
        "jobs",
        response=BulkResult,
        errors=(422,),
        params=(_BULK_LIMIT,),
        description="Each job goes back to the queue with a fresh set of attempts and a `retried` "
        "event. Bounded: `more` tells whether failed jobs of the type remain.",
    ),
    ("POST", "/api/job-types/{job_type}/cancel-waiting"): Operation(
        "Cancel the waiting jobs of a type, oldest first (running jobs are left alone)",
        "jobs",
        response=BulkResult,
        errors=(422,),
        params=(_BULK_LIMIT,),
        description="Each job ends `cancelled` with a `cancelled` event. Bounded: `more` tells "
        "whether waiting jobs of the type remain.",
    ),
    # -- worker pools (api/workers.py) --
    ("GET", "/api/workers"): Operation(
        "The live worker pools and the job types with waiting jobs none of them serves",
        "workers",
        response=WorkerList,
    ),
    ("PUT", "/api/workers/{worker_id}"): Operation(
        "Register a worker pool, or renew its registration (send it as the pool's heartbeat)",
        "workers",
        request=WorkerRegistration,
        response=Worker,
        errors=_BODY_ERRORS,
        description="The pool stays listed `ttl` seconds after each registration; send it again "
        "every third of that. A pool that stops sends DELETE.",
    ),
    ("DELETE", "/api/workers/{worker_id}"): Operation(
        "Unregister a worker pool (it stopped)",
        "workers",
        status=204,
        extra_responses={"404": "The worker is not registered"},
    ),
    ("POST", "/api/keys"): Operation(
        "Create an API key; the response is the only time its secret (`key`) is shown",
        "keys",
        request=ApiKeyCreate,
        response=CreatedApiKey,
        status=201,
        errors=(409, *_BODY_ERRORS),
    ),
    ("GET", "/api/keys"): Operation("List API keys (never their secrets)", "keys", response=ApiKeyList),
    ("DELETE", "/api/keys/{key_id}"): Operation(
        "Revoke an API key (by id or name); it stops working at once in every process",
        "keys",
        response=ApiKey,
        errors=(404,),
    ),
    ("GET", "/api/schedules"): Operation(
        "List periodic jobs' schedules, with their next and last tick", "schedules", response=ScheduleList
    ),
    ("GET", "/api/schedules/{name}"): Operation(
        "Get a schedule", "schedules", response=Schedule, errors=(404,), params=_SCHEDULE_NAME
    ),
    ("PUT", "/api/schedules/{name}"): Operation(
        "Create or replace a schedule (a cron expression or an interval)",
        "schedules",
        request=ScheduleSpec,
        response=Schedule,
        status=201,
        errors=_BODY_ERRORS,
        extra_responses={"200": "Replaced an existing schedule"},
        params=_SCHEDULE_NAME,
        description="Exactly one of `cron` (5 fields, or 6 with seconds first, read in `timezone`, "
        "an IANA name) and `every` (seconds, counted from the Unix epoch). A replacement that "
        "ticks at the same instants keeps its next tick; a pause stays. `missed` says what "
        "happens to ticks no scheduler fired within 5 seconds: `skip` them, or `catch_up` with "
        "one job.",
    ),
    ("DELETE", "/api/schedules/{name}"): Operation(
        "Delete a schedule (the jobs it made stay)", "schedules", status=204, errors=(404,), params=_SCHEDULE_NAME
    ),
    ("POST", "/api/schedules/{name}/pause"): Operation(
        "Pause a schedule: no jobs until it is resumed",
        "schedules",
        response=Schedule,
        errors=(404,),
        params=_SCHEDULE_NAME,
    ),
    ("POST", "/api/schedules/{name}/resume"): Operation(
        "Resume a schedule from its next future tick",
        "schedules",
        response=Schedule,
        errors=(404,),
        params=_SCHEDULE_NAME,
    ),
    ("POST", "/api/schedules/{name}/run"): Operation(
        "Queue one job of the schedule now (its ticks stay as they are)",
        "schedules",
        response=Job,
        status=201,
        errors=(404,),
        params=_SCHEDULE_NAME,
    ),
    ("GET", "/api/job-types"): Operation(
        "Every job type with controls or jobs: its pause, limits, running jobs, counts by status "
        "and next allowed start",
        "job types",
        response=TypeControlsList,
    ),
    ("GET", "/api/job-types/{job_type}"): Operation(
        "A job type's flow controls (a type never configured has none)",
        "job types",
        response=TypeControls,
    ),
    ("PATCH", "/api/job-types/{job_type}"): Operation(
        "Set or clear a job type's limits (fields sent change, null clears); every process's next "
        "claim obeys them",
        "job types",
        request=TypeControlsUpdate,
        response=TypeControls,
        errors=_BODY_ERRORS,
        description="`max_running`: at most N jobs of the type running at once across all workers "
        "(0 stops new starts). `max_running_per_key`: at most N running per `concurrency_key` (set at "
        "enqueue). `rate`: `{\"limit\": N, \"period\": seconds}`, at most N starts in any window of "
        "that many seconds; jobs over a limit stay queued without using an attempt.",
    ),
    ("POST", "/api/job-types/{job_type}/pause"): Operation(
        "Pause a job type: no job of it is claimed until resumed; running jobs finish; survives restarts",
        "job types",
        response=TypeControls,
    ),
    ("POST", "/api/job-types/{job_type}/resume"): Operation(
        "Resume a paused job type", "job types", response=TypeControls
    ),
    ("GET", "/login"): Operation("The login form of the browser pages (HTML)", "keys", media_type="text/html"),
    ("POST", "/login"): Operation(
        "Log in with a key (form field `key`): sets an HttpOnly, SameSite=Strict session cookie",
        "keys",
        status=303,
        description="Form-encoded (`key`, optional `next`); answers 401 with the form again for a bad key.",
    ),
    ("POST", "/logout"): Operation("End the browser's session", "keys", status=303),
    ("POST", "/api/generate"): Operation(
        "Queue a generation job with the default model",
        "generation",
        request=GenerateRequest,
        response=Job,
        status=201,
        errors=_BODY_ERRORS,
    ),
    ("POST", "/api/generate/{model}"): Operation(
        "Queue a generation job with this model",
        "generation",
        request=GenerateRequest,
        response=Job,
        status=201,
        errors=_BODY_ERRORS,
        params=(
            Param("model", {"type": "string", "enum": sorted(MODELS)}, "The model", location="path", required=True),
        ),
    ),
}

#: How a request proves who it is. Each operation's ``security`` lists the scopes that may call it
#: (any one of them; ``admin`` may call everything). Without any key configured on the server,
#: nothing is asked.
_SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`jobqueue keys create`, `POST /api/keys`) or JOBQUEUE_ADMIN_KEY; "
        "on /metrics also METRICS_TOKEN. Scopes: admin, enqueue, worker, read.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "jobqueue_session",
        "description": "Set by `POST /login` for the browser pages; a change it authenticates must "
        "come from this site (same origin).",
    },
}

_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _schema_of(kind: type | dict[str, Any]) -> dict[str, Any]:
    if isinstance(kind, dict):
        return kind
    return {"$ref": REF.format(name=kind.__name__)}


def _security(scopes: tuple[KeyScope, ...] | None) -> list[dict[str, list[str]]]:
    """Who may call an operation: any of the scopes (admin always), by key or session cookie."""
    if scopes is None:
        return []  # open
    names = [s.value for s in scopes] + ([] if KeyScope.ADMIN in scopes else [KeyScope.ADMIN.value])
    return [{scheme: [name]} for scheme in _SECURITY_SCHEMES for name in names]


def _operation_object(
    method: str, path: str, op: Operation, scopes: tuple[KeyScope, ...] | None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": op.summary,
        "tags": [op.tag],
        "security": _security(scopes),
    }
    if op.description:
        operation["description"] = op.description
    declared = {param.name for param in op.params if param.location == "path"}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(path)
        if name not in declared
    ]
    for param in op.params:
        item: dict[str, Any] = {"name": param.name, "in": param.location, "schema": param.schema}
        if param.description:
            item["description"] = param.description
        if param.required:
            item["required"] = True
        if param.schema.get("type") == "array":
            item["style"], item["explode"] = "form", True
        params.append(item)
    if params:
        operation["parameters"] = params
    if op.request is not None:
        operation["requestBody"] = {
            # A cancel without a body is a plain cancel request; every other body is required.
            "required": op.request is not CancelRequest,
            "content": {"application/json": {"schema": _schema_of(op.request)}},
        }
    success: dict[str, Any] = {"description": {201: "Created", 303: "See Other"}.get(op.status, "OK")}
    if op.media_type is not None:
        schema = {"type": "string"} if op.response is None else _schema_of(op.response)
        success["content"] = {op.media_type: {"schema": schema}}
    elif op.response is not None:
        success["content"] = {"application/json": {"schema": _schema_of(op.response)}}
    if op.status == 204:
        success["description"] = "Deleted"
    responses: dict[str, Any] = {str(op.status): success}
    for status, text in op.extra_responses.items():
        responses[status] = {"description": text}
        if op.response is not None and op.media_type is None:
            responses[status]["content"] = {"application/json": {"schema": _schema_of(op.response)}}
    for status in (*op.errors, *(() if scopes is None else (401, 403))):
        responses[str(status)] = {
            "description": _ERROR_TEXT[status],
            "content": {"application/json": {"schema": _schema_of(ErrorBody)}},
        }
    responses.setdefault(
        "default",
        {"description": "Error", "content": {"application/json": {"schema": _schema_of(ErrorBody)}}},
    )
    operation["responses"] = responses
    return operation


def _operation_id(method: str, path: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path) if w]
    return "_".join([method.lower(), *words]) if words else f"{method.lower()}_root"


def required_scopes(routes: list[BaseRoute]) -> dict[tuple[str, str], tuple[KeyScope, ...] | None]:
    """(METHOD, path) -> the scopes its endpoint declares with ``@requires`` (None: open)."""
    found: dict[tuple[str, str], tuple[KeyScope, ...] | None] = {}
    for route in routes:
        if isinstance(route, Route):
            path = route.path if route.path == "/" else route.path.rstrip("/")
            for method in route.methods or ():
                found[(method, path)] = getattr(route.endpoint, "required_scopes", None)
    return found


def documented_routes(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    """(METHOD, path) of every route in the schema; a trailing-slash alias counts once."""
    seen: set[tuple[str, str]] = set()
    found: list[tuple[str, str]] = []
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        path = route.path if route.path == "/" else route.path.rstrip("/")
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            key = (method, path)
            if key not in seen:
                seen.add(key)
                found.append(key)
    return found


#: ``models.JSONData``: what free-form job data may hold. JSON Schema counts 2.0 (and 1e300) as
#: integers; the API only refuses integers written as such, so the bound is on those.
JSON_DATA_SCHEMA: dict[str, Any] = {
    "description": (
        f"Any JSON value nested at most {MAX_JSON_DEPTH} levels deep (with the body around it), "
        f"whose integers are within ±{MAX_JSON_INTEGER} (2^53: beyond it, parsers that read "
        "numbers as doubles return another number; send such values as strings)"
    ),
    "anyOf": [
        {"type": ["null", "boolean", "string"]},
        {"type": "integer", "minimum": -MAX_JSON_INTEGER, "maximum": MAX_JSON_INTEGER},
        {"type": "number", "not": {"type": "integer"}},
        {"type": "array", "items": {"$ref": JSON_DATA_REF}},
        {"type": "object", "additionalProperties": {"$ref": JSON_DATA_REF}},
    ],
}


def build_openapi(routes: list[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an app with these routes."""
    _, components = msgspec.json.schema_components(SCHEMA_TYPES, ref_template=REF)
    components["JSONData"] = JSON_DATA_SCHEMA
    add_examples(components)
    # A batch item is decoded on its own (so one bad item is reported by its index), hence a
    # plain object in the struct; the document gives its real shape.
    components["BatchCreate"]["properties"]["jobs"]["items"] = {"$ref": REF.format(name="JobCreate")}
    paths: dict[str, dict[str, Any]] = {}
    scopes = required_scopes(routes)
    for method, path in documented_routes(routes):
        op = OPERATIONS.get((method, path)) or Operation("Undocumented", "undocumented")
        paths.setdefault(path, {})[method.lower()] = _operation_object(method, path, op, scopes[(method, path)])
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "jobqueue",
            "version": jobqueue.__version__,
            "description": "A durable async job queue: REST API, worker protocol and live job events.\n\n"
            "Send the key as `Authorization: Bearer <key>` when the server has keys. See also the "
            "[dashboard](/dashboard), [metrics](/metrics) and the raw [OpenAPI document](/openapi.json).",
        },
        "tags": [
            {"name": "jobs", "description": "Queue, inspect, cancel and retry jobs"},
            {"name": "events", "description": "Follow jobs live"},
            {"name": "workers", "description": "The remote-worker protocol (claims, leases, results)"},
            {"name": "generation", "description": "The example generation job type"},
            {"name": "service", "description": "Health, readiness, metrics and documentation"},
            {"name": "keys", "description": "API keys (admin) and the browser's login"},
            {"name": "schedules", "description": "Periodic jobs: cron expressions and intervals"},
        ],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": _SECURITY_SCHEMES},
    }


# -- endpoints -------------------------------------------------------------------------------------

_STATIC = resources.files("jobqueue") / "static"
_ASSETS = {"docs.js": "text/javascript; charset=utf-8", "docs.css": "text/css; charset=utf-8"}


@requires(KeyScope.READ, KeyScope.ENQUEUE, KeyScope.WORKER)
async def openapi_json(request: Request) -> Response:
    # Built once per app: routes and types do not change while it runs.
    cached = getattr(request.app.state, "openapi_document", None)
    if cached is None:
        cached = msgspec.json.encode(build_openapi(request.app.routes))
        request.app.state.openapi_document = cached
    return Response(cached, media_type="application/json")


@requires(KeyScope.READ, KeyScope.ENQUEUE, KeyScope.WORKER)
async def docs(request: Request) -> Response:
    return Response((_STATIC / "docs.html").read_bytes(), media_type="text/html; charset=utf-8")


async def docs_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _ASSETS:
        return JSONResponse(ErrorBody(error="not_found", detail=f"no asset {name!r}"), status_code=404)
    return Response(
        (_STATIC / name).read_bytes(),
        media_type=_ASSETS[name],
        headers={"cache-control": "public, max-age=300"},
    )


routes: list[Route] = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    Route("/docs/{name}", docs_asset, methods=["GET"], include_in_schema=False),
]
