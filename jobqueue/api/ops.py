"""Operations endpoints: ``GET /metrics`` (Prometheus) and ``GET /ready`` (readiness).

``/health`` (in routes.py) stays a cheap liveness check; ``/ready`` says whether this instance
can serve: its database answers, and Redis, when configured, is reported.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobqueue.api.auth import requires
from jobqueue.api.responses import JSONResponse
from jobqueue.api.routes import get_job_queue_service
from jobqueue.metrics import CONTENT_TYPE_LATEST, JobMetrics
from jobqueue.models import KeyScope

#: Seconds each readiness check may take.
READY_CHECK_TIMEOUT = 2.0


def get_metrics(request: Request) -> JobMetrics:
    return request.state.metrics  # type: ignore[no-any-return]


@requires(KeyScope.READ)
async def metrics(request: Request) -> Response:
    registry = get_metrics(request)
    # Queue depth is a fact about the database, read at scrape time rather than kept in step.
    registry.refresh_queue(await get_job_queue_service(request).get_stats())
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)


async def _ping_redis(url: str) -> str:
    # A short-lived connection: readiness probes are rare, and the event hub's own connection
    # must not be borrowed (a probe stuck on it would stall event delivery).
    client = aioredis.Redis.from_url(url, socket_connect_timeout=READY_CHECK_TIMEOUT, socket_timeout=READY_CHECK_TIMEOUT)
    try:
        await client.ping()
        return "ok"
    except (RedisError, OSError) as exc:
        return f"error: {exc}"
    finally:
        await client.aclose()


@requires(KeyScope.READ)
async def ready(request: Request) -> Response:
    """200 when the database answers; Redis (when configured) is checked and reported.

    An unreachable Redis does not make the instance unready: events then flow through the
    database poll, so jobs are still accepted, run and streamed, only later.
    """
    service = get_job_queue_service(request)
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(service.ping(), READY_CHECK_TIMEOUT)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready: report it, never raise
        checks["database"] = f"error: {exc or type(exc).__name__}"
    redis_url = service.settings.redis_url
    checks["redis"] = "not configured" if redis_url is None else await _ping_redis(redis_url)
    is_ready = checks["database"] == "ok"
    body = {"status": "ready" if is_ready else "unavailable", **checks}
    return JSONResponse(body, status_code=200 if is_ready else 503)


routes: list[Route] = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
]
