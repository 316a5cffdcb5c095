"""The benchmark's server: ``jobqueue serve --no-worker`` plus a bare no-op JSON route.

The no-op route is the ceiling the enqueue endpoint is compared with: same process, same uvicorn
(uvloop, and the HTTP parser ``serve`` uses), same middleware, error handlers and route matching, no database. It is mounted here, never
in the product. Access logging is off, as it would be behind a proxy that logs.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobqueue.api.app import create_app
from jobqueue.api.protocol import UVICORN_HTTP_OPTIONS
from jobqueue.api.responses import JSONResponse
from jobqueue.settings import load_settings

from benchmarks.handlers import registry


async def noop(request: Request) -> Response:
    await request.body()  # the same work up to the handler as the enqueue endpoint
    return JSONResponse({"ok": True}, status_code=201)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    settings = load_settings(
        overrides={
            "database_url": args.database_url,
            "port": str(args.port),
            "host": "127.0.0.1",
            "run_worker": "false",
            "redis_url": args.redis_url,
        }
    )
    app = create_app(settings, registry=registry)
    # Right after the enqueue route, so both pay the same route matching: appended last, the
    # no-op paid ~25 us/request to try every other route first, which flattered the ratio.
    routes = app.router.routes
    enqueue = next(i for i, r in enumerate(routes) if getattr(r, "path", None) == "/api/jobs")
    routes.insert(enqueue + 1, Route("/bench/noop", noop, methods=["POST"]))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        log_level="warning",
        access_log=False,
        **UVICORN_HTTP_OPTIONS,
    )


if __name__ == "__main__":
    main()
