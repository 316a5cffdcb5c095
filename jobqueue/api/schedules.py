"""``/api/schedules``: periodic jobs over HTTP. Reading needs ``read``; creating, replacing,
deleting, pausing and running one needs ``admin`` (they change what runs, as pausing does)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobqueue.api.auth import requires
from jobqueue.api.responses import JSONResponse
from jobqueue.api.routes import check_request_data, get_job_queue_service, read_json
from jobqueue.models import KeyScope, ScheduleList, ScheduleSpec


@requires(KeyScope.READ)
async def list_schedules(request: Request) -> Response:
    return JSONResponse(ScheduleList(items=await get_job_queue_service(request).list_schedules()))


@requires(KeyScope.READ)
async def get_schedule(request: Request) -> Response:
    return JSONResponse(await get_job_queue_service(request).require_schedule(request.path_params["name"]))


@requires(KeyScope.ADMIN)
async def put_schedule(request: Request) -> Response:
    body = await read_json(request, ScheduleSpec)
    # Refused now rather than found out at every tick.
    check_request_data(request, body.job_type, body.request_data)
    schedule, created = await get_job_queue_service(request).put_schedule(request.path_params["name"], body)
    return JSONResponse(schedule, status_code=201 if created else 200)


@requires(KeyScope.ADMIN)
async def delete_schedule(request: Request) -> Response:
    await get_job_queue_service(request).delete_schedule(request.path_params["name"])
    return Response(status_code=204)


@requires(KeyScope.ADMIN)
async def pause_schedule(request: Request) -> Response:
    return JSONResponse(await get_job_queue_service(request).pause_schedule(request.path_params["name"]))


@requires(KeyScope.ADMIN)
async def resume_schedule(request: Request) -> Response:
    return JSONResponse(await get_job_queue_service(request).resume_schedule(request.path_params["name"]))


@requires(KeyScope.ADMIN)
async def run_schedule(request: Request) -> Response:
    job = await get_job_queue_service(request).run_schedule(request.path_params["name"])
    return JSONResponse(job, status_code=201)


routes: list[Route] = [
    Route("/api/schedules", list_schedules, methods=["GET"]),
    Route("/api/schedules/{name}", get_schedule, methods=["GET"]),
    Route("/api/schedules/{name}", put_schedule, methods=["PUT"]),
    Route("/api/schedules/{name}", delete_schedule, methods=["DELETE"]),
    Route("/api/schedules/{name}/pause", pause_schedule, methods=["POST"]),
    Route("/api/schedules/{name}/resume", resume_schedule, methods=["POST"]),
    Route("/api/schedules/{name}/run", run_schedule, methods=["POST"]),
]
