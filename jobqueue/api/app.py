"""The application factory: ``create_app(settings)`` composes routes, error handlers and lifespan.

All state (database, service, worker pool, reaper, scheduler) is created in the lifespan and reached from
requests as ``request.state.service``; nothing lives in module globals, so tests and embedding
applications can run several apps side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from jobqueue.api.auth import AuthMiddleware
from jobqueue.api.auth import routes as login_routes
from jobqueue.api.bulk import routes as bulk_routes
from jobqueue.api.dashboard import routes as dashboard_routes
from jobqueue.api.errors import (
    RequestError,
    handle_domain_error,
    handle_http_error,
    handle_request_error,
    internal_error_handler,
)
from jobqueue.api.hosts import SameOriginMiddleware, TrustedHostMiddleware, trusted_hosts
from jobqueue.api.job_types import routes as job_type_routes
from jobqueue.api.keys import routes as key_routes
from jobqueue.api.limits import BodyLimitMiddleware
from jobqueue.api.openapi import routes as openapi_routes
from jobqueue.api.ops import routes as ops_routes
from jobqueue.api.routes import routes
from jobqueue.api.schedules import routes as schedule_routes
from jobqueue.api.sse import StreamSlots
from jobqueue.api.sse import routes as stream_routes
from jobqueue.api.workers import routes as worker_routes
from jobqueue.errors import JobQueueError
from jobqueue.handlers import default_registry
from jobqueue.keys import KeyRing
from jobqueue.metrics import JobMetrics
from jobqueue.scheduler import Scheduler
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings, load_settings
from jobqueue.worker import Reaper, Registry, WorkerPool

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> Starlette:
    """Build the ASGI app. ``registry`` replaces the example handlers, for the in-process pool
    and for the check of each job type's ``request_data`` at enqueue."""
    settings = load_settings() if settings is None else settings
    registry = default_registry() if registry is None else registry

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with JobQueueService.open(settings) as service:
            metrics = JobMetrics()  # per app, so apps side by side keep separate counts
            metrics.attach(service)
            await service.declare_schedules(registry.schedules)
            background: list[asyncio.Task[Any]] = [
                asyncio.create_task(Reaper(service).run(), name="jobqueue-reaper"),
                asyncio.create_task(Scheduler(service).run(), name="jobqueue-scheduler"),
            ]
            if settings.prune_interval > 0:
                background.append(asyncio.create_task(_prune_loop(service), name="jobqueue-prune"))
            pool: WorkerPool | None = None
            if settings.run_worker:
                pool = WorkerPool(service, registry, job_types=settings.job_types)
                background.append(asyncio.create_task(pool.run(), name="jobqueue-pool"))
                metrics.track_pool(pool)
            keyring = KeyRing(service.store, admin_key=settings.admin_key, metrics_token=settings.metrics_token)
            try:
                streams = StreamSlots(settings.max_streams, settings.max_streams_per_client)
                yield {
                    "service": service,
                    "pool": pool,
                    "metrics": metrics,
                    "keyring": keyring,
                    "registry": registry,
                    "streams": streams,
                }
            finally:
                if pool is not None:
                    pool.stop()
                    await asyncio.gather(background[-1], return_exceptions=True)
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)

    # Not Starlette(debug=...): its debug mode answers errors with an HTML (or plain text)
    # traceback page instead of the error shape; internal_error_handler puts the traceback in it.
    return Starlette(
        routes=[
            # Before the job routes: /api/jobs/batch is its own resource, not the job "batch" of
            # /api/jobs/{job_id} (routing tries a full match anyway; the 405's Allow uses the first
            # pattern that matches).
            *bulk_routes,
            *routes,
            *worker_routes,
            *stream_routes,
            *key_routes,
            *schedule_routes,
            *job_type_routes,
            *login_routes,
            *dashboard_routes,
            *ops_routes,
            *openapi_routes,
        ],
        lifespan=lifespan,
        # Outermost first: refuse foreign hosts and origins and oversized bodies before
        # looking at credentials.
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts(settings)),
            Middleware(SameOriginMiddleware),
            Middleware(BodyLimitMiddleware),
            Middleware(AuthMiddleware),
        ],
        exception_handlers={
            RequestError: handle_request_error,
            JobQueueError: handle_domain_error,
            HTTPException: handle_http_error,
            Exception: internal_error_handler(settings.debug),
        },
    )


async def _prune_loop(service: JobQueueService) -> None:
    """Apply the retention policy every ``prune_interval`` seconds (see ``service.prune``)."""
    settings = service.settings
    while True:
        try:
            deleted = await service.prune(
                completed_older_than=settings.retention_completed_days * 86_400,
                failed_older_than=settings.retention_failed_days * 86_400,
            )
            if deleted:
                logger.info("retention: deleted %d finished jobs", deleted)
        except JobQueueError as exc:
            logger.error("retention run failed: %s", exc)
        await asyncio.sleep(settings.prune_interval)
