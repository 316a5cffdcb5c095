"""Endpoint functions. They parse and validate, call the service, and encode; nothing more.

Routes never run jobs: they change rows through ``JobQueueService`` and return.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar

import msgspec
import msgspec.inspect
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import jobqueue
from jobqueue.api.auth import principal, requires
from jobqueue.api.disconnect import watch_disconnect
from jobqueue.api.errors import RequestError, validation_error
from jobqueue.api.limits import MAX_JSON_DEPTH, nested_too_deep, unstorable_value
from jobqueue.api.responses import JSONResponse
from jobqueue.errors import Forbidden, ValidationFailed
from jobqueue.handlers.generation import GENERATION_JOB_TYPE, MODELS, DEFAULT_MODEL, GenerateRequest
from jobqueue.models import (
    MAX_TIMINGS_WINDOW,
    ClaimedJob,
    JobCreate,
    JobList,
    JobRef,
    JobStatus,
    JobUpdate,
    JSONData,
    KeyScope,
    Message,
    Progress,
    ProgressUpdate,
    WorkerId,
)
from jobqueue import tracing
from jobqueue.service import MAX_PAGE_SIZE, TIMINGS_WINDOW_SECONDS, JobQueueService, deduplicated
from jobqueue.worker import Registry

T = TypeVar("T", bound=msgspec.Struct)

#: Longest long-poll a remote worker may ask for, in seconds.
MAX_CLAIM_WAIT = 60.0
#: Largest ``offset`` of a job listing.
MAX_OFFSET = 2**62
#: Response header of a create answered with the unfinished job holding its ``unique_key``.
DEDUPLICATED_HEADER = "Jobqueue-Deduplicated"


def get_job_queue_service(request: Request) -> JobQueueService:
    """The service of the running app (set up in the lifespan), for any Starlette endpoint."""
    return request.state.service  # type: ignore[no-any-return]


async def check_job_type(request: Request, job_id: str) -> None:
    """403 when the request's key is limited to job types and this job is of another one (only
    such a key costs a read of the job)."""
    if principal(request).job_types is not None:
        job = await get_job_queue_service(request).require_job(job_id)
        principal(request).require_type(job.job_type)


def visible_type(request: Request, job_type: str | None) -> str | None:
    """The ``job_type`` filter of a listing, checked against the key's job types: a key limited
    to one type lists that type; limited to several, it must name one."""
    allowed = principal(request).job_types
    if allowed is None:
        return job_type
    if job_type is None:
        if len(allowed) != 1:
            raise Forbidden(f"this key sees only job types {', '.join(sorted(allowed))}: pass job_type")
        return next(iter(allowed))
    principal(request).require_type(job_type)
    return job_type


def get_registry(request: Request) -> Registry:
    """The app's handler registry: what ``request_data`` each job type it knows accepts."""
    return request.state.registry  # type: ignore[no-any-return]


def check_request_data(request: Request, job_type: str, request_data: Any) -> None:
    """422 naming the field when the app's registry declares what ``request_data`` a job of this
    type accepts and this is not it."""
    request_type = get_registry(request).request_types.get(job_type)
    if request_type is not None:
        try:
            msgspec.convert(request_data, request_type)
        except msgspec.ValidationError as exc:
            raise validation_error(exc, within="request_data") from None


# -- request parsing ------------------------------------------------------------------------------


async def read_json(request: Request, kind: type[T]) -> T:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise RequestError(
            415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json"
        )
    body = await request.body()  # bounded by BodyLimitMiddleware (api/limits.py)
    if nested_too_deep(body):
        raise RequestError(400, "nested_too_deep", f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = _decode(body, kind)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise RequestError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    found = unstorable_value(msgspec.structs.asdict(value))
    if found is not None:
        path, why = found
        raise RequestError(422, "validation_error", f"{path} {why}", re.split(r"[.\[]", path, maxsplit=1)[0])
    return value


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        if not _INT_GOT_FLOAT.search(str(exc)):
            raise
    return convert_fields(msgspec.json.decode(body), kind)  # an object: only a struct's field expects an int


def convert_fields(fields: dict[str, Any], kind: type[T]) -> T:
    """A decoded JSON object as ``kind``, its integral floats of integer fields as integers."""
    # JSON has one number type: to JSON Schema (and so to OpenAPI clients) 3.0 is the integer 3,
    # which msgspec refuses. Integral floats of integer fields (nested structs' too) become
    # integers; 3.5 still fails, and free-form fields (request_data, result_data) are left
    # exactly as sent.
    _integral_floats_as_ints(fields, kind)
    return msgspec.convert(fields, kind)


#: msgspec's complaint about a float where an integer (or an optional one) belongs.
_INT_GOT_FLOAT = re.compile(r"Expected `int[^`]*`, got `float`")


def _integral_floats_as_ints(value: dict[str, Any], kind: type[msgspec.Struct]) -> None:
    for field in msgspec.inspect.type_info(kind).fields:  # type: ignore[attr-defined]
        types = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        item = value.get(field.encode_name)
        if isinstance(item, float) and item.is_integer() and any(isinstance(t, msgspec.inspect.IntType) for t in types):
            value[field.encode_name] = int(item)
        elif isinstance(item, dict):
            for nested in types:
                if isinstance(nested, msgspec.inspect.StructType):
                    _integral_floats_as_ints(item, nested.cls)


#: Query parameters ``data.<field>=<value>`` of ``GET /api/jobs`` filter on ``request_data``.
DATA_PARAM_PREFIX = "data."


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(422, "validation_error", f"{name} must be an integer, got {raw!r}", name) from None
    if not low <= value <= high:
        raise RequestError(422, "validation_error", f"{name} must be between {low} and {high}", name)
    return value


def _query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise RequestError(422, "validation_error", f"{name} must be true or false, got {raw!r}", name)


def _query_statuses(request: Request) -> list[JobStatus] | None:
    values = [v for raw in request.query_params.getlist("status") for v in raw.split(",") if v]
    statuses = []
    for value in values:
        try:
            statuses.append(JobStatus(value))
        except ValueError:
            known = ", ".join(s.value for s in JobStatus)
            raise RequestError(
                422, "validation_error", f"unknown status {value!r}; expected one of: {known}", "status"
            ) from None
    return statuses or None


def _query_data(request: Request) -> dict[str, str]:
    """The ``data.<field>=<value>`` parameters, by field (checked by the service)."""
    data: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if not name.startswith(DATA_PARAM_PREFIX):
            continue
        field = name.removeprefix(DATA_PARAM_PREFIX)
        if field in data:
            raise RequestError(422, "validation_error", f"{name} is given more than once", name)
        data[field] = value
    return data


def _idempotency_key(request: Request, body_key: str | None) -> str | None:
    header = request.headers.get("idempotency-key")
    if header is not None and not 1 <= len(header) <= 200:
        raise RequestError(422, "validation_error", "Idempotency-Key must be 1 to 200 characters", "Idempotency-Key")
    if header is not None and body_key is not None and header != body_key:
        raise RequestError(
            422, "validation_error", "Idempotency-Key header and idempotency_key field differ", "idempotency_key"
        )
    return header or body_key


# -- service ----------------------------------------------------------------------------------------


@requires(KeyScope.READ, KeyScope.ENQUEUE, KeyScope.WORKER)
async def index(request: Request) -> Response:
    return JSONResponse(
        {
            "name": "jobqueue",
            "version": jobqueue.__version__,
            "links": {
                "jobs": "/api/jobs",
                "stats": "/api/jobs/stats",
                "events": "/api/events",
                "generate": "/api/generate",
                "dashboard": "/dashboard",
                "docs": "/docs",
                "openapi": "/openapi.json",
                "metrics": "/metrics",
                "health": "/health",
                "ready": "/ready",
            },
        }
    )


async def health(request: Request) -> Response:
    service = get_job_queue_service(request)
    checks: dict[str, str] = {}
    healthy = True
    try:
        await asyncio.wait_for(service.ping(), timeout=5)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means the database is unusable: report, don't raise
        checks["database"] = f"error: {exc}"
        healthy = False
    # Redis is optional and only speeds up delivery: degraded is reported, never a 503.
    checks["redis"] = service.events.redis_state
    body = {"status": "ok" if healthy else "unavailable", **checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


# -- jobs -------------------------------------------------------------------------------------------


def check_create(request: Request, body: JobCreate) -> None:
    """What a create request must pass besides its shape: the key's job types, and the
    ``request_data`` the type's handler accepts."""
    principal(request).require_type(body.job_type)
    # The handler's limits hold here too, not only on its own route (/api/generate).
    check_request_data(request, body.job_type, body.request_data)


async def unserved_warning(service: JobQueueService, job_types: Iterable[str]) -> dict[str, str]:
    """A ``Warning`` header (RFC 9111's 199, "miscellaneous warning") for each job type no live
    worker serves: its jobs would wait in silence (a typo in the type, or its pools are down).
    A header, not a body field, so the response body stays exactly the job, as before."""
    unserved = await service.unserved_types(job_types)
    if not unserved:
        return {}
    texts = []
    for job_type in unserved:
        # A header is Latin-1: the type goes ASCII-escaped, inside a quoted string.
        label = job_type.encode("ascii", "backslashreplace").decode()
        text = f"no live worker serves job type '{label}'".replace("\\", "\\\\").replace('"', '\\"')
        texts.append(f'199 jobqueue "{text}"')
    return {"Warning": ", ".join(texts)}


@requires(KeyScope.ENQUEUE)
async def create_job(request: Request) -> Response:
    body = await read_json(request, JobCreate)
    check_create(request, body)
    service = get_job_queue_service(request)
    idempotency_key = _idempotency_key(request, body.idempotency_key)
    job, created = await service.create_job(
        body.job_type,
        body.request_data,
        body.priority,
        max_attempts=body.max_attempts,
        timeout=body.timeout,
        run_at=body.run_at,
        delay=body.delay,
        idempotency_key=idempotency_key,
        concurrency_key=body.concurrency_key,
        depends_on=body.depends_on,
        on_dependency_failure=body.on_dependency_failure,
        unique_key=body.unique_key,
        debounce=body.debounce,
        trace_context=tracing.from_headers(request.headers),
    )
    headers = await unserved_warning(service, [job.job_type])
    if deduplicated(job, created, idempotency_key, body.unique_key):
        headers[DEDUPLICATED_HEADER] = "true"
    status_code = 201 if created else 200
    if _prefers_minimal(request):
        headers.update(MINIMAL_APPLIED)
        return JSONResponse(JobRef(id=job.id, status=job.status), status_code, headers)
    return JSONResponse(job, status_code=status_code, headers=headers)


#: Answer headers of a request whose ``Prefer: return=minimal`` was honoured (RFC 7240).
MINIMAL_APPLIED = {"Preference-Applied": "return=minimal"}


def _prefers_minimal(request: Request) -> bool:
    """Whether the client asked for the id and status only (``Prefer: return=minimal``): a
    producer that enqueues in bulk skips encoding and reading a whole job per request."""
    prefer = request.headers.get("prefer")
    if prefer is None:
        return False
    return any(p.split(";", 1)[0].strip().lower() == "return=minimal" for p in prefer.split(","))


@requires(KeyScope.READ, KeyScope.ENQUEUE)
async def list_jobs(request: Request) -> Response:
    limit = _query_int(request, "limit", 50, 1, MAX_PAGE_SIZE)
    offset = _query_int(request, "offset", 0, 0, MAX_OFFSET)
    items, total = await get_job_queue_service(request).list_jobs(
        status=_query_statuses(request),
        job_type=visible_type(request, request.query_params.get("job_type") or None),
        worker_id=request.query_params.get("worker_id") or None,
        id_prefix=request.query_params.get("id_prefix"),
        data=_query_data(request),
        limit=limit,
        offset=offset,
    )
    return JSONResponse(JobList(items=items, total=total, limit=limit, offset=offset))


@requires(KeyScope.READ, KeyScope.ENQUEUE)
async def get_job(request: Request) -> Response:
    job = await get_job_queue_service(request).require_job(request.path_params["job_id"])
    principal(request).require_type(job.job_type)
    return JSONResponse(job)


class UpdateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PUT /api/jobs/{id}``: only the fields sent change.

    A field left out stays as it is; null clears message, result_data, error and worker_id,
    and is refused for status and progress (a job always has both).
    """

    status: JobStatus | UnsetType = UNSET
    progress: Progress | UnsetType = UNSET
    message: Message | None | UnsetType = UNSET
    result_data: JSONData | UnsetType = UNSET
    error: Message | None | UnsetType = UNSET
    worker_id: WorkerId | None | UnsetType = UNSET
    #: The holder's claim token: a held job changes only with it (or with an admin's force).
    claim_token: str | UnsetType = UNSET


@requires(KeyScope.ADMIN, KeyScope.WORKER)
async def update_job(request: Request) -> Response:
    body = await read_json(request, UpdateRequest)
    sent = {name: value for name, value in msgspec.structs.asdict(body).items() if value is not UNSET}
    force = _query_bool(request, "force")
    if force or "claim_token" not in sent:
        # Only the holder (its claim token) is a worker's business; anything else is an operator's.
        principal(request).require(KeyScope.ADMIN)
    job_id = request.path_params["job_id"]
    await check_job_type(request, job_id)
    job = await get_job_queue_service(request).apply_update(job_id, JobUpdate(**sent), set(sent), force=force)
    return JSONResponse(job)


@requires(KeyScope.ADMIN, KeyScope.WORKER)
async def report_progress(request: Request) -> Response:
    body = await read_json(request, ProgressUpdate)
    if body.claim_token is None:
        principal(request).require(KeyScope.ADMIN)
    await check_job_type(request, request.path_params["job_id"])
    job = await get_job_queue_service(request).update_progress(
        request.path_params["job_id"],
        body.progress,
        body.message,
        status=None if body.status is None else JobStatus(body.status),
        claim_token=body.claim_token,
    )
    return JSONResponse(job)


@requires(KeyScope.ADMIN)
async def delete_job(request: Request) -> Response:
    await get_job_queue_service(request).delete_job(request.path_params["job_id"])
    return Response(status_code=204)


@requires(KeyScope.READ)
async def stats(request: Request) -> Response:
    job_type = request.path_params.get("job_type")
    if job_type is not None:
        principal(request).require_type(job_type)
    elif principal(request).job_types is not None:
        raise Forbidden("this key is limited to some job types: ask /api/jobs/stats/{job_type}")
    return JSONResponse(await get_job_queue_service(request).get_stats(job_type))


@requires(KeyScope.READ)
async def timings(request: Request) -> Response:
    window = _query_int(request, "window", int(TIMINGS_WINDOW_SECONDS), 1, MAX_TIMINGS_WINDOW)
    found = await get_job_queue_service(request).timings(window)
    allowed = principal(request).job_types
    if allowed is not None:
        # A key limited to job types sees the timings of those types only.
        found.items = [item for item in found.items if item.job_type in allowed]
    return JSONResponse(found)


class CancelRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Sent by the worker holding the job to confirm it stopped; the job then ends cancelled.
    claim_token: str | None = None


@requires(KeyScope.ADMIN, KeyScope.WORKER)
async def cancel_job(request: Request) -> Response:
    service = get_job_queue_service(request)
    job_id = request.path_params["job_id"]
    token = None
    if await request.body():
        token = (await read_json(request, CancelRequest)).claim_token
    if token is None:
        principal(request).require(KeyScope.ADMIN)  # a worker only confirms a requested cancel
    await check_job_type(request, job_id)
    if token is not None:
        return JSONResponse(await service.acknowledge_cancel(job_id, token))
    return JSONResponse(await service.cancel_job(job_id))


@requires(KeyScope.ADMIN)
async def retry_job(request: Request) -> Response:
    return JSONResponse(await get_job_queue_service(request).retry_job(request.path_params["job_id"]))


# -- the remote-worker protocol -------------------------------------------------------------------


class ClaimRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    worker_id: WorkerId
    #: Only jobs of these types; absent or null claims any type, an empty list none.
    job_types: list[str] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    #: Seconds to wait for a job when none is ready (long poll); 0 answers at once.
    wait: Annotated[float, msgspec.Meta(ge=0, le=MAX_CLAIM_WAIT)] = 0


class ClaimResponse(msgspec.Struct, kw_only=True):
    jobs: list[ClaimedJob]
    lease_seconds: float


class TokenRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    claim_token: str


class CompleteRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    claim_token: str
    result_data: JSONData = None
    message: str | None = None


class FailRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    claim_token: str
    error: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
    #: False fails the job for good even when attempts remain.
    retry: bool = True
    message: str | None = None
    #: The failure's traceback or stack, kept with the attempt (cut to its first line and last
    #: 16,000 characters).
    traceback: Annotated[str, msgspec.Meta(max_length=200_000)] | None = None


class HeartbeatResponse(msgspec.Struct, kw_only=True):
    cancel_requested: bool
    lease_seconds: float


@requires(KeyScope.WORKER)
async def claim_jobs(request: Request) -> Response:
    body = await read_json(request, ClaimRequest)
    service = get_job_queue_service(request)
    job_types = _claimable_types(request, body.job_types)
    deadline = time.monotonic() + body.wait
    wakeup = asyncio.Event()
    service.add_wakeup(wakeup)
    try:
        # A worker that hangs up mid-wait must not be handed jobs nobody will run.
        async with watch_disconnect(request, wakeup) as gone:
            while True:
                wakeup.clear()
                # An empty list of types claims nothing (both stores), while the wait is still
                # honoured: a worker loop asking with no types must not spin.
                jobs = await service.claim_jobs(
                    worker_id=body.worker_id, job_types=job_types, limit=body.limit
                )
                remaining = deadline - time.monotonic()
                if jobs or remaining <= 0:
                    break
                # Woken at once by new work from any process (event hub), or by the client
                # leaving; the poll interval is the fallback should a wake-up be missed. Timing
                # out just means: claim again.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), min(remaining, service.settings.poll_interval))
                if gone.is_set():
                    return Response(status_code=204)  # never delivered: nobody is listening
    finally:
        service.remove_wakeup(wakeup)
    return JSONResponse(ClaimResponse(jobs=jobs, lease_seconds=service.settings.lease_seconds))


def _claimable_types(request: Request, asked: list[str] | None) -> list[str] | None:
    """What a claim may take: a key limited to job types claims only those (all of them when the
    request names none; naming another type is refused)."""
    allowed = principal(request).job_types
    if allowed is None:
        return asked
    if asked is None:
        return sorted(allowed)
    for job_type in asked:
        principal(request).require_type(job_type)
    return asked


@requires(KeyScope.WORKER)
async def heartbeat(request: Request) -> Response:
    body = await read_json(request, TokenRequest)
    await check_job_type(request, request.path_params["job_id"])
    service = get_job_queue_service(request)
    cancel = await service.heartbeat(request.path_params["job_id"], body.claim_token)
    return JSONResponse(HeartbeatResponse(cancel_requested=cancel, lease_seconds=service.settings.lease_seconds))


@requires(KeyScope.WORKER)
async def complete_job(request: Request) -> Response:
    body = await read_json(request, CompleteRequest)
    await check_job_type(request, request.path_params["job_id"])
    job = await get_job_queue_service(request).complete_job(
        request.path_params["job_id"], body.claim_token, body.result_data, body.message
    )
    return JSONResponse(job)


@requires(KeyScope.WORKER)
async def fail_job(request: Request) -> Response:
    body = await read_json(request, FailRequest)
    service = get_job_queue_service(request)
    job_id = request.path_params["job_id"]
    current = await service.require_job(job_id)
    principal(request).require_type(current.job_type)
    job = await service.fail_job(
        job_id,
        body.claim_token,
        body.error,
        retry=body.retry,
        attempts=current.attempts,
        message=body.message,
        traceback=body.traceback,
    )
    return JSONResponse(job)


@requires(KeyScope.READ, KeyScope.ENQUEUE)
async def job_attempts(request: Request) -> Response:
    service = get_job_queue_service(request)
    job_id = request.path_params["job_id"]
    principal(request).require_type((await service.require_job(job_id)).job_type)
    return JSONResponse(await service.attempts(job_id))


@requires(KeyScope.WORKER)
async def release_job(request: Request) -> Response:
    body = await read_json(request, TokenRequest)
    await check_job_type(request, request.path_params["job_id"])
    job = await get_job_queue_service(request).release_job(request.path_params["job_id"], body.claim_token)
    return JSONResponse(job)


# -- generation (the seed's example job type) ------------------------------------------------------


@requires(KeyScope.ENQUEUE)
async def generate(request: Request) -> Response:
    principal(request).require_type(GENERATION_JOB_TYPE)
    model = request.path_params.get("model", DEFAULT_MODEL)
    if model not in MODELS:
        raise ValidationFailed(
            f"unknown model {model!r}; known models: {', '.join(sorted(MODELS))}", "model"
        )
    body = await read_json(request, GenerateRequest)
    request_data = {"model": model, "prompt": body.prompt, "duration": body.duration}
    service = get_job_queue_service(request)
    job, created = await service.create_job(
        GENERATION_JOB_TYPE,
        request_data,
        body.priority,
        idempotency_key=_idempotency_key(request, None),
    )
    warning = await unserved_warning(service, [job.job_type])
    return JSONResponse(job, status_code=201 if created else 200, headers=warning)


def _both(path: str, endpoint: Any, methods: list[str]) -> list[Route]:
    """The path with and without a trailing slash, answering the same (no redirect)."""
    return [Route(path, endpoint, methods=methods), Route(path + "/", endpoint, methods=methods)]


routes: list[Route] = [
    Route("/", index, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    *_both("/api/jobs", create_job, ["POST"]),
    *_both("/api/jobs", list_jobs, ["GET"]),
    Route("/api/jobs/stats", stats, methods=["GET"]),
    Route("/api/jobs/stats/{job_type}", stats, methods=["GET"]),
    Route("/api/stats/timings", timings, methods=["GET"]),
    Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/api/jobs/{job_id}", update_job, methods=["PUT"]),
    Route("/api/jobs/{job_id}", delete_job, methods=["DELETE"]),
    Route("/api/jobs/{job_id}/attempts", job_attempts, methods=["GET"]),
    Route("/api/jobs/{job_id}/progress", report_progress, methods=["POST"]),
    Route("/api/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/api/jobs/{job_id}/retry", retry_job, methods=["POST"]),
    Route("/api/jobs/{job_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/api/jobs/{job_id}/complete", complete_job, methods=["POST"]),
    Route("/api/jobs/{job_id}/fail", fail_job, methods=["POST"]),
    Route("/api/jobs/{job_id}/release", release_job, methods=["POST"]),
    Route("/api/workers/claim", claim_jobs, methods=["POST"]),
    Route("/api/generate", generate, methods=["POST"]),
    Route("/api/generate/{model}", generate, methods=["POST"]),
]
