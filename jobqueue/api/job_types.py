"""``/api/job-types``: the flow controls of each job type (pause, concurrency and rate limits).

Reads need ``read``; changes are an operator's, ``admin``. The controls live in the database, so
a change holds for every process's next claim at once; nothing is cached per process.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobqueue.api.auth import principal, requires
from jobqueue.api.responses import JSONResponse
from jobqueue.api.routes import get_job_queue_service, read_json
from jobqueue.models import KeyScope, TypeControlsList, TypeControlsUpdate


def _job_type(request: Request) -> str:
    job_type: str = request.path_params["job_type"]
    principal(request).require_type(job_type)
    return job_type


@requires(KeyScope.READ)
async def list_job_types(request: Request) -> Response:
    items = await get_job_queue_service(request).job_types()
    allowed = principal(request).job_types
    if allowed is not None:
        items = [item for item in items if item.job_type in allowed]
    return JSONResponse(TypeControlsList(items=items))


@requires(KeyScope.READ)
async def get_job_type(request: Request) -> Response:
    return JSONResponse(await get_job_queue_service(request).type_controls(_job_type(request)))


@requires(KeyScope.ADMIN)
async def update_job_type(request: Request) -> Response:
    job_type = _job_type(request)
    body = await read_json(request, TypeControlsUpdate)
    return JSONResponse(await get_job_queue_service(request).set_type_controls(job_type, body))


@requires(KeyScope.ADMIN)
async def pause_job_type(request: Request) -> Response:
    return JSONResponse(await get_job_queue_service(request).pause(_job_type(request)))


@requires(KeyScope.ADMIN)
async def resume_job_type(request: Request) -> Response:
    return JSONResponse(await get_job_queue_service(request).resume(_job_type(request)))


routes: list[Route] = [
    Route("/api/job-types", list_job_types, methods=["GET"]),
    Route("/api/job-types/{job_type}", get_job_type, methods=["GET"]),
    Route("/api/job-types/{job_type}", update_job_type, methods=["PATCH"]),
    Route("/api/job-types/{job_type}/pause", pause_job_type, methods=["POST"]),
    Route("/api/job-types/{job_type}/resume", resume_job_type, methods=["POST"]),
]
