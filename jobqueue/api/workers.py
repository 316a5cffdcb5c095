"""Worker pools you can see: ``GET /api/workers`` lists the live pools and the job types no live
pool serves; ``PUT`` and ``DELETE /api/workers/{worker_id}`` let a remote pool (one that claims
over ``POST /api/workers/claim``) register, renew its registration as its heartbeat, and leave.
In-process pools (``jobqueue worker``, ``serve``) register through the service directly."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobqueue.api.auth import principal, requires
from jobqueue.api.errors import RequestError
from jobqueue.api.responses import JSONResponse
from jobqueue.api.routes import get_job_queue_service, read_json
from jobqueue.models import KeyScope, WorkerList, WorkerRegistration

#: Longest worker id (as ``WorkerId`` in the claim).
MAX_WORKER_ID = 200


def _worker_id(request: Request) -> str:
    worker_id: str = request.path_params["worker_id"]
    if len(worker_id) > MAX_WORKER_ID:
        raise RequestError(422, "validation_error", f"worker_id must be 1 to {MAX_WORKER_ID} characters", "worker_id")
    return worker_id


@requires(KeyScope.READ)
async def list_workers(request: Request) -> Response:
    service = get_job_queue_service(request)
    workers = await service.list_workers()
    waiting = await service.waiting_types()
    allowed = principal(request).job_types
    if allowed is not None:
        # A key limited to job types sees the pools serving them, and only those types.
        workers = [w for w in workers if allowed.intersection(w.job_types)]
        waiting &= set(allowed)
    served = {job_type for worker in workers for job_type in worker.job_types}
    return JSONResponse(WorkerList(items=workers, unserved_types=sorted(waiting - served)))


@requires(KeyScope.WORKER)
async def register_worker(request: Request) -> Response:
    body = await read_json(request, WorkerRegistration)
    for job_type in body.job_types:
        principal(request).require_type(job_type)
    worker = await get_job_queue_service(request).register_worker(
        _worker_id(request),
        host=body.host,
        pid=body.pid,
        job_types=body.job_types,
        concurrency=body.concurrency,
        ttl=body.ttl,
    )
    return JSONResponse(worker)


@requires(KeyScope.WORKER)
async def unregister_worker(request: Request) -> Response:
    worker_id = _worker_id(request)
    if not await get_job_queue_service(request).unregister_worker(worker_id):
        raise RequestError(404, "worker_not_found", f"worker {worker_id!r} is not registered")
    return Response(status_code=204)


routes: list[Route] = [
    Route("/api/workers", list_workers, methods=["GET"]),
    Route("/api/workers/{worker_id}", register_worker, methods=["PUT"]),
    Route("/api/workers/{worker_id}", unregister_worker, methods=["DELETE"]),
]
