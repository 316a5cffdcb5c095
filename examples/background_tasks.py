"""Your own Starlette app with jobqueue inside it, and Starlette's BackgroundTask next to it.

The two do different things. ``POST /reports`` queues the report as a *job*: durable, retried,
run by a worker (here the pool inside this process). The ``BackgroundTask`` runs in this process
right after the response is sent and is lost if the process dies, so it only does cheap
best-effort follow-up: here, one audit line. HTTP never runs the job itself.

Run it::

    python examples/background_tasks.py      # DATABASE_URL, HOST, PORT, AUDIT_LOG as usual
    curl -X POST localhost:8000/reports -H 'Content-Type: application/json' -d '{"customer": "acme"}'
    curl localhost:8000/api/jobs/<job_id>     # the whole jobqueue API is mounted too
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from jobqueue.api.app import create_app
from jobqueue.api.auth import AuthMiddleware, requires
from jobqueue.api.routes import get_job_queue_service
from jobqueue.models import KeyScope
from jobqueue.settings import Settings, load_settings
from jobqueue.worker import JobContext, Registry

registry = Registry()


@registry.handler("report")
async def build_report(ctx: JobContext) -> dict[str, Any]:
    """The job: slow work a worker does (a stand-in that sleeps)."""
    for step in range(1, 5):
        await asyncio.sleep(0.05)
        await ctx.progress(step * 25, f"section {step} of 4")
    return {"customer": ctx.request_data["customer"], "pages": 4}


class ReportRequest(msgspec.Struct, forbid_unknown_fields=True):
    customer: str


def write_audit_line(audit_log: Path, job_id: str, customer: str, client: str) -> None:
    """The background task: runs after the client has its answer, so it adds no latency."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with audit_log.open("a", encoding="utf-8") as log:
        log.write(f"{stamp} report {job_id} queued for {customer} by {client}\n")


def build_app(settings: Settings, audit_log: Path) -> Starlette:
    jobqueue_app = create_app(settings, registry=registry)

    # Our own route asks for a key like the API's own routes do (once any key exists).
    @requires(KeyScope.ENQUEUE)
    async def request_report(request: Request) -> JSONResponse:
        try:
            body = msgspec.json.decode(await request.body(), type=ReportRequest)
        except msgspec.ValidationError as exc:
            return JSONResponse({"error": "validation_error", "detail": str(exc)}, status_code=422)
        except msgspec.DecodeError as exc:
            return JSONResponse({"error": "malformed_json", "detail": str(exc)}, status_code=400)
        job_id = await get_job_queue_service(request).enqueue_job("report", {"customer": body.customer})
        client = request.client.host if request.client else "unknown"
        return JSONResponse(
            {"job_id": job_id, "status_url": f"/api/jobs/{job_id}"},
            status_code=202,
            background=BackgroundTask(write_audit_line, audit_log, job_id, body.customer, client),
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # jobqueue's lifespan opens the database and starts the worker pool; its state (the
        # service) reaches our routes and the mounted API alike, as request.state.
        async with jobqueue_app.router.lifespan_context(jobqueue_app) as state:
            yield dict(state or {})

    return Starlette(
        routes=[Route("/reports", request_report, methods=["POST"]), Mount("/", app=jobqueue_app)],
        middleware=[Middleware(AuthMiddleware)],
        lifespan=lifespan,
    )


def main() -> None:
    import uvicorn

    settings = load_settings()
    audit_log = Path(os.environ.get("AUDIT_LOG", "audit.log"))
    uvicorn.run(build_app(settings, audit_log), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
