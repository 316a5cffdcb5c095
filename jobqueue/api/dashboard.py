"""``GET /dashboard``: a live page for people watching the queue.

The page is static HTML, CSS and vanilla JS shipped inside the package (``jobqueue/static/dashboard``),
with no build step and nothing fetched from elsewhere: it reads the public API (``/api/jobs``,
``/api/jobs/stats``, ``/api/stats/timings``, ``/api/workers``) and follows ``/api/events`` for
live progress, so it shows exactly what any other client of the API would see. Besides the main
page: one job's page, the Charts page and the Workers page.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from jobqueue.api.auth import requires
from jobqueue.models import KeyScope

_ASSETS = ("jobqueue", "static/dashboard")

# Everything the page loads must come from this service; the policy makes a stray CDN link or an
# injected script fail loudly in the browser instead of quietly reaching out.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _page(name: str) -> Response:
    page = files(_ASSETS[0]).joinpath(_ASSETS[1], name).read_bytes()
    return Response(page, media_type="text/html; charset=utf-8", headers=_SECURITY_HEADERS)


@requires(KeyScope.READ)
async def dashboard(request: Request) -> Response:
    return _page("index.html")


@requires(KeyScope.READ)
async def job_page(request: Request) -> Response:
    """One job's page, at a URL to share: the page reads the job's id from its own path."""
    return _page("job.html")


@requires(KeyScope.READ)
async def charts_page(request: Request) -> Response:
    """Throughput from the event stream, and wait/run time percentiles per job type."""
    return _page("charts.html")


@requires(KeyScope.READ)
async def workers_page(request: Request) -> Response:
    """The live worker pools, and the job types with waiting jobs that none of them serves."""
    return _page("workers.html")


routes: list[BaseRoute] = [
    Route("/dashboard", dashboard, methods=["GET"]),
    Route("/dashboard/charts", charts_page, methods=["GET"]),
    Route("/dashboard/workers", workers_page, methods=["GET"]),
    Route("/dashboard/jobs/{job_id}", job_page, methods=["GET"]),
    Mount("/dashboard/static", StaticFiles(packages=[_ASSETS]), name="dashboard-static"),
]
