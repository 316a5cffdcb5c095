"""What a user would build instead of jobqueue's HTTP API: a Starlette endpoint that enqueues
into SAQ or arq. ``python -m benchmarks.peer_http saq|arq --port P --redis-url URL``.

``POST /enqueue`` reads the JSON body, enqueues a ``noop`` job with it as keyword arguments and
answers 201 with the job's id and status, the least a client needs back. It runs under uvicorn
with its defaults as a user would start it (uvloop, httptools), access logging off as for
jobqueue's server. Only the benchmark mounts it.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def saq_app(redis_url: str) -> Starlette:
    from saq import Queue

    queue = Queue.from_url(redis_url)

    async def enqueue(request: Request) -> JSONResponse:
        job = await queue.enqueue("noop", **(await request.json()))
        return JSONResponse({"id": job.key, "status": job.status}, status_code=201)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await queue.connect()
        yield
        await queue.disconnect()

    return Starlette(routes=[Route("/enqueue", enqueue, methods=["POST"])], lifespan=lifespan)


def arq_app(redis_url: str) -> Starlette:
    from arq import create_pool
    from arq.connections import RedisSettings

    state: dict[str, Any] = {}

    async def enqueue(request: Request) -> JSONResponse:
        job = await state["pool"].enqueue_job("noop", **(await request.json()))
        return JSONResponse({"id": job.job_id, "status": "queued"}, status_code=201)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["pool"] = await create_pool(RedisSettings.from_dsn(redis_url))
        yield
        await state["pool"].aclose()

    return Starlette(routes=[Route("/enqueue", enqueue, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=["arq", "saq"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    app = saq_app(args.redis_url) if args.system == "saq" else arq_app(args.redis_url)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
