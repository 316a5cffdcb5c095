"""Bulk operations: create up to ``MAX_BATCH_JOBS`` jobs in one request and one transaction,
retry every failed job of a type, cancel every waiting job of a type, purge finished jobs.

Each is bounded (``MAX_BULK_JOBS`` jobs a call; the answer says whether more remain) and written
as events like its single-job counterpart, so streams and the dashboard see it: ``created``,
``retried`` and ``cancelled``. Purged jobs take their events with them, as a single DELETE does.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobqueue import tracing
from jobqueue.api.auth import principal, requires
from jobqueue.api.errors import RequestError, validation_error
from jobqueue.api.responses import JSONResponse
from jobqueue.api.routes import (
    _both,
    _query_int,
    _query_statuses,
    check_create,
    convert_fields,
    get_job_queue_service,
    read_json,
    unserved_warning,
    visible_type,
)
from jobqueue.errors import BatchRefused, JobQueueError, batch_refused_detail
from jobqueue.models import (
    MAX_BULK_JOBS,
    BatchCreate,
    BatchItem,
    BatchRefusedBody,
    BatchResult,
    BulkResult,
    ErrorBody,
    JobCreate,
    KeyScope,
)


def _error_body(exc: Exception) -> ErrorBody:
    if isinstance(exc, RequestError):
        return exc.body
    assert isinstance(exc, JobQueueError)
    return ErrorBody(error=exc.code, detail=str(exc), field=getattr(exc, "field", None))


def _refused(refused: dict[int, ErrorBody], size: int) -> Response:
    detail = batch_refused_detail(len(refused), size)
    items = [BatchItem(index=index, error=error) for index, error in sorted(refused.items())]
    return JSONResponse(BatchRefusedBody(error=BatchRefused.code, detail=detail, items=items), status_code=422)


@requires(KeyScope.ENQUEUE)
async def create_jobs(request: Request) -> Response:
    body = await read_json(request, BatchCreate)
    valid: list[JobCreate] = []
    positions: list[int] = []
    refused: dict[int, ErrorBody] = {}
    for index, fields in enumerate(body.jobs):
        try:
            item = convert_fields(fields, JobCreate)
            check_create(request, item)
        except msgspec.ValidationError as exc:
            refused[index] = validation_error(exc).body
            continue
        except (RequestError, JobQueueError) as exc:
            refused[index] = _error_body(exc)
            continue
        valid.append(item)
        positions.append(index)
    if body.atomic and refused:
        return _refused(refused, len(body.jobs))
    service = get_job_queue_service(request)
    try:
        outcomes = await service.create_jobs(
            valid, atomic=body.atomic, trace_context=tracing.from_headers(request.headers)
        )
    except BatchRefused as exc:
        return _refused({positions[i]: _error_body(error) for i, error in exc.errors}, len(body.jobs))
    items = [BatchItem(index=index, error=error) for index, error in refused.items()]
    for index, outcome in zip(positions, outcomes):
        if isinstance(outcome, JobQueueError):
            items.append(BatchItem(index=index, error=_error_body(outcome)))
        else:
            items.append(BatchItem(index=index, job=outcome[0], created=outcome[1]))
    items.sort(key=lambda item: item.index)
    created = sum(1 for item in items if item.created)
    result = BatchResult(
        items=items,
        created=created,
        existing=sum(1 for item in items if item.created is False),
        refused=sum(1 for item in items if item.error is not None),
    )
    warning = await unserved_warning(service, {item.job.job_type for item in items if item.job is not None})
    return JSONResponse(result, headers=warning)


def _limit(request: Request) -> int:
    return _query_int(request, "limit", MAX_BULK_JOBS, 1, MAX_BULK_JOBS)


def _result(changed: tuple[list[str], bool]) -> Response:
    ids, more = changed
    return JSONResponse(BulkResult(affected=len(ids), more=more, job_ids=ids))


@requires(KeyScope.ADMIN)
async def retry_failed(request: Request) -> Response:
    job_type = request.path_params["job_type"]
    principal(request).require_type(job_type)
    return _result(await get_job_queue_service(request).retry_failed(job_type, _limit(request)))


@requires(KeyScope.ADMIN)
async def cancel_waiting(request: Request) -> Response:
    job_type = request.path_params["job_type"]
    principal(request).require_type(job_type)
    return _result(await get_job_queue_service(request).cancel_waiting(job_type, _limit(request)))


@requires(KeyScope.ADMIN)
async def purge_jobs(request: Request) -> Response:
    statuses = _query_statuses(request)
    if statuses is None:
        raise RequestError(
            422, "validation_error", "status is required: completed, failed and/or cancelled", "status"
        )
    before = None
    raw = request.query_params.get("before")
    if raw is not None:  # given empty is a mistake too, not "no cutoff"
        try:
            before = datetime.fromisoformat(raw)
        except ValueError:
            raise RequestError(
                422, "validation_error", f"before must be an ISO 8601 instant, got {raw!r}", "before"
            ) from None
    changed = await get_job_queue_service(request).purge_jobs(
        statuses,
        job_type=visible_type(request, request.query_params.get("job_type") or None),
        before=before,
        limit=_limit(request),
    )
    return _result(changed)


routes: list[Route] = [
    Route("/api/jobs/batch", create_jobs, methods=["POST"]),
    *_both("/api/jobs", purge_jobs, ["DELETE"]),
    Route("/api/job-types/{job_type}/retry-failed", retry_failed, methods=["POST"]),
    Route("/api/job-types/{job_type}/cancel-waiting", cancel_waiting, methods=["POST"]),
]
