"""``GET /api/stats/timings``: wait and run time percentiles per job type, on every backend,
checked against figures worked out by hand from jobs with known clocks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from jobqueue.keys import create_key
from jobqueue.models import MAX_TIMINGS_WINDOW, TIMING_PERCENTILES, KeyScope
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

from .conftest import assert_error, create
from .helpers import set_job_clock


async def finish(client: httpx.AsyncClient, database_url: str, job_type: str, *, wait: float, run: float, ago: float) -> None:
    """A job of ``job_type`` that waited ``wait`` s, ran ``run`` s and finished ``ago`` s ago."""
    job = await create(client, job_type)
    for status in ("processing", "completed"):
        response = await client.put(f"/api/jobs/{job['id']}", json={"status": status})
        assert response.status_code == 200, response.text
    finished = time.time() - ago
    set_job_clock(database_url, job["id"], created=finished - run - wait, started=finished - run, finished=finished)


async def test_percentiles_per_type_over_the_window(client: httpx.AsyncClient, settings: Settings) -> None:
    url = settings.database_url
    # Eleven jobs of "render": waits 0, 10, ..., 100 s and runs 0, 1, ..., 10 s, listed out of order.
    for i in (3, 10, 0, 7, 1, 5, 9, 2, 8, 4, 6):
        await finish(client, url, "render", wait=10 * i, run=i, ago=30)
    await finish(client, url, "mail", wait=3, run=2, ago=30)
    # Outside a 60 s window (but inside the default hour), and a job that never started.
    await finish(client, url, "render", wait=1000, run=1000, ago=120)
    never_ran = await create(client, "render")
    assert (await client.post(f"/api/jobs/{never_ran['id']}/cancel")).status_code == 200

    response = await client.get("/api/stats/timings", params={"window": 60})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window"] == 60 and body["sampled"] is False
    mail, render = body["items"]
    assert mail == {"job_type": "mail", "count": 1, "wait": {"p50": 3, "p95": 3, "p99": 3}, "run": {"p50": 2, "p95": 2, "p99": 2}}
    assert render["job_type"] == "render" and render["count"] == 11
    # Linear interpolation at p * (n - 1): rank 5, 9.5 and 9.9 of 0..10.
    assert render["wait"] == pytest.approx({"p50": 50, "p95": 95, "p99": 99}, abs=0.01)
    assert render["run"] == pytest.approx({"p50": 5, "p95": 9.5, "p99": 9.9}, abs=0.01)

    # The default window (an hour) takes in the job that finished two minutes ago.
    hour = (await client.get("/api/stats/timings")).json()
    assert hour["window"] == 3600
    render = next(item for item in hour["items"] if item["job_type"] == "render")
    assert render["count"] == 12
    # Twelve values 0..10 and 1000: rank 11 * 0.99 = 10.89 lies between 10 and 1000.
    assert render["run"]["p50"] == pytest.approx(5.5, abs=0.01)
    assert render["run"]["p99"] == pytest.approx(10 + 0.89 * 990, abs=0.01)


async def test_no_finished_jobs_and_bad_windows(client: httpx.AsyncClient) -> None:
    await create(client, "waiting")
    body = (await client.get("/api/stats/timings")).json()
    assert body == {"window": 3600, "items": [], "sampled": False}
    for window in ("0", str(MAX_TIMINGS_WINDOW + 1), "soon"):
        assert_error(await client.get("/api/stats/timings", params={"window": window}), 422, "window")



async def test_read_scope_and_keys_limited_to_job_types(
    service: JobQueueService, app_client_factory: Callable[..., Any], settings: Settings
) -> None:
    async with app_client_factory(settings) as client:  # no key yet: open
        for job_type in ("mine", "theirs"):
            await finish(client, settings.database_url, job_type, wait=1, run=1, ago=5)
    reader = (await create_key(service.store, "reader", [KeyScope.READ], None)).key
    producer = (await create_key(service.store, "producer", [KeyScope.ENQUEUE], None)).key
    limited = (await create_key(service.store, "limited", [KeyScope.READ], ["mine"])).key
    async with app_client_factory(settings) as client:
        def types(key: str) -> Any:
            return client.get("/api/stats/timings", headers={"authorization": f"Bearer {key}"})

        assert [item["job_type"] for item in (await types(reader)).json()["items"]] == ["mine", "theirs"]
        assert [item["job_type"] for item in (await types(limited)).json()["items"]] == ["mine"]
        assert_error(await types(producer), 403)
        assert_error(await client.get("/api/stats/timings"), 401)


async def test_the_read_is_bounded_to_the_most_recently_finished(
    client: httpx.AsyncClient, service: JobQueueService, settings: Settings
) -> None:
    # Runs of 1..5 s, the longest finished first: a sample of 3 holds the runs of 1, 2 and 3 s.
    for run in (5, 4, 3, 2, 1):
        await finish(client, settings.database_url, "batch", wait=0, run=run, ago=10 * run)
    (sample,) = await service.store.timings(time.time() - 3600, 3, TIMING_PERCENTILES)
    assert sample.count == 3 and sample.run.p50 == pytest.approx(2) and sample.run.p99 == pytest.approx(2.98)
    whole = (await client.get("/api/stats/timings")).json()
    assert whole["sampled"] is False and whole["items"][0]["run"]["p50"] == pytest.approx(3)
