"""``/api/keys``: managing API keys over HTTP, with an ``admin`` key (``jobqueue keys`` does the
same on the database directly)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobqueue.api.auth import requires
from jobqueue.api.responses import JSONResponse
from jobqueue.api.routes import get_job_queue_service, read_json
from jobqueue.keys import create_key
from jobqueue.models import ApiKeyCreate, ApiKeyList, KeyScope


@requires(KeyScope.ADMIN)
async def create_api_key(request: Request) -> Response:
    body = await read_json(request, ApiKeyCreate)
    store = get_job_queue_service(request).store
    created = await create_key(store, body.name, body.scopes, body.job_types)
    return JSONResponse(created, status_code=201)


@requires(KeyScope.ADMIN)
async def list_api_keys(request: Request) -> Response:
    return JSONResponse(ApiKeyList(items=await get_job_queue_service(request).store.list_api_keys()))


@requires(KeyScope.ADMIN)
async def revoke_api_key(request: Request) -> Response:
    store = get_job_queue_service(request).store
    return JSONResponse(await store.revoke_api_key(request.path_params["key_id"]))


routes: list[Route] = [
    Route("/api/keys", create_api_key, methods=["POST"]),
    Route("/api/keys", list_api_keys, methods=["GET"]),
    Route("/api/keys/{key_id}", revoke_api_key, methods=["DELETE"]),
]
