"""GET /metrics: counts that follow the jobs, bounded labels with no job ids, one registry per app,
queue depth read at scrape time; a worker process's own metrics port; GET /ready."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from jobqueue.metrics import MAX_JOB_TYPE_LABELS, OTHER_JOB_TYPE, JobMetrics
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

from .conftest import free_port, make_settings, subprocess_env

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
CEILING = 30.0


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(client: httpx.AsyncClient) -> tuple[Samples, str]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text), response.text


async def claim(client: httpx.AsyncClient, limit: int) -> list[dict[str, Any]]:
    response = await client.post("/api/workers/claim", json={"worker_id": "w1", "limit": limit})
    assert response.status_code == 200, response.text
    return response.json()["jobs"]  # type: ignore[no-any-return]


async def test_counts_follow_enqueue_claim_and_finish(client: httpx.AsyncClient) -> None:
    ids = []
    for _ in range(3):
        created = await client.post("/api/jobs", json={"job_type": "thumbnail"})
        ids.append(created.json()["id"])
    replay = await client.post("/api/jobs", json={"job_type": "thumbnail", "idempotency_key": "k"})
    again = await client.post("/api/jobs", json={"job_type": "thumbnail", "idempotency_key": "k"})
    assert again.json()["id"] == replay.json()["id"]  # a replay is not a new job
    ids.append(replay.json()["id"])

    claimed = await claim(client, 2)
    done, failing = claimed
    ok = await client.post(
        f"/api/jobs/{done['job']['id']}/complete", json={"claim_token": done["claim_token"], "result_data": 1}
    )
    assert ok.status_code == 200
    failed = await client.post(
        f"/api/jobs/{failing['job']['id']}/fail",
        json={"claim_token": failing["claim_token"], "error": "broken", "retry": False},
    )
    assert failed.json()["status"] == "failed"
    assert (await client.post(f"/api/jobs/{ids[2]}/cancel")).json()["status"] == "cancelled"

    samples, text = await scrape(client)
    assert value(samples, "jobqueue_jobs_enqueued_total", job_type="thumbnail") == 4
    assert value(samples, "jobqueue_jobs_finished_total", job_type="thumbnail", status="completed") == 1
    assert value(samples, "jobqueue_jobs_finished_total", job_type="thumbnail", status="failed") == 1
    assert value(samples, "jobqueue_jobs_finished_total", job_type="thumbnail", status="cancelled") == 1
    assert value(samples, "jobqueue_attempts_failed_total", job_type="thumbnail") == 1
    assert value(samples, "jobqueue_job_wait_seconds_count", job_type="thumbnail") == 2
    assert value(samples, "jobqueue_job_run_seconds_count", job_type="thumbnail", status="completed") == 1
    assert value(samples, "jobqueue_job_run_seconds_count", job_type="thumbnail", status="failed") == 1
    # The cancelled job never started: it has no run time.
    assert value(samples, "jobqueue_job_run_seconds_count", job_type="thumbnail", status="cancelled") is None

    # Queue depth is read from the database at the scrape.
    assert value(samples, "jobqueue_queue_jobs", status="queued") == 1
    assert value(samples, "jobqueue_queue_jobs", status="completed") == 1
    assert value(samples, "jobqueue_queue_ready") == 1
    assert value(samples, "jobqueue_queue_scheduled") == 0
    assert value(samples, "jobqueue_redis_configured") == 0
    assert value(samples, "jobqueue_redis_up") == 0
    assert value(samples, "jobqueue_event_listeners") == 0
    assert value(samples, "jobqueue_worker_slots") == 0  # this app runs no pool

    # Job ids never become labels.
    for (_, labels) in samples:
        assert not {"id", "job_id"} & {name for name, _ in labels}
        for _, label_value in labels:
            assert label_value not in ids
    assert not any(job_id in text for job_id in ids)


async def test_each_app_has_its_own_registry(
    database_url: str, second_database_url: str, app_client_factory: Callable[..., Any]
) -> None:
    async with app_client_factory(make_settings(database_url)) as first, app_client_factory(
        make_settings(second_database_url)
    ) as second:
        await first.post("/api/jobs", json={"job_type": "resize"})
        await first.post("/api/jobs", json={"job_type": "resize"})
        await second.post("/api/jobs", json={"job_type": "resize"})
        assert value((await scrape(first))[0], "jobqueue_jobs_enqueued_total", job_type="resize") == 2
        assert value((await scrape(second))[0], "jobqueue_jobs_enqueued_total", job_type="resize") == 1


async def test_jobs_of_other_processes_are_not_counted_here(
    live_server: Callable[..., str], database_url: str
) -> None:
    """Counters sum over processes: a job is counted by the process that changed it, even though
    every process's event hub sees every job's events."""
    url = live_server(RUN_WORKER="false", SSE_KEEPALIVE="0.2")
    settings = make_settings(database_url)  # the server's database
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(CEILING, read=CEILING)) as http:
        await http.post("/api/jobs", json={"job_type": "resize"})
        async with http.stream("GET", "/api/events", params={"job_type": "resize"}) as stream:
            async with JobQueueService.open(settings) as elsewhere:
                other = await elsewhere.enqueue_job("resize")
            # Once the server streams the other job's event, its hub has dispatched it.
            async for line in stream.aiter_lines():
                if line.startswith("data:") and other in line:
                    break
        samples = parse((await http.get("/metrics")).text)
    assert value(samples, "jobqueue_jobs_enqueued_total", job_type="resize") == 1
    assert value(samples, "jobqueue_queue_jobs", status="queued") == 2


def test_job_type_labels_are_bounded() -> None:
    metrics = JobMetrics()
    labels = {metrics.job_type_label(f"type-{n}") for n in range(MAX_JOB_TYPE_LABELS + 5)}
    assert len(labels) == MAX_JOB_TYPE_LABELS + 1 and OTHER_JOB_TYPE in labels
    assert metrics.job_type_label("type-0") == "type-0"  # known types keep their label


async def test_ready_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "redis": "not configured"}


async def test_ready_reports_redis(
    database_url: str, app_client_factory: Callable[..., Any], redis_url: str
) -> None:
    async with app_client_factory(make_settings(database_url, redis_url=redis_url)) as client:
        body = (await client.get("/ready")).json()
        assert body["redis"] == "ok" and body["status"] == "ready"
        deadline = time.monotonic() + CEILING
        while value((await scrape(client))[0], "jobqueue_redis_up") != 1:
            assert time.monotonic() < deadline, "the event hub never reported Redis up"
        assert value((await scrape(client))[0], "jobqueue_redis_configured") == 1


async def test_ready_stays_ready_when_redis_is_unreachable(
    database_url: str, app_client_factory: Callable[..., Any]
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with app_client_factory(make_settings(database_url, redis_url=dead)) as client:
        response = await client.get("/ready")
        assert response.status_code == 200
        assert response.json()["redis"].startswith("error: ")
        samples, _ = await scrape(client)
        assert value(samples, "jobqueue_redis_configured") == 1
        assert value(samples, "jobqueue_redis_up") == 0


async def test_worker_process_serves_its_metrics(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    ledger = tmp_path / "ledger.txt"
    async with JobQueueService.open(settings) as service:
        for _ in range(2):
            await service.enqueue_job("ledger", {"ledger": str(ledger)})
        worker = subprocess.Popen(
            [sys.executable, "-m", "jobqueue", "worker", "--registry", "tests.handlers:registry",
             "--job-types", "ledger", "--concurrency", "3", "--metrics-port", str(port), "--log-level", "warning"],
            env=subprocess_env(DATABASE_URL=settings.database_url, HOST="127.0.0.1"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + CEILING
            samples: Samples = {}
            while time.monotonic() < deadline:
                assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
                try:
                    samples = parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
                except httpx.TransportError:
                    samples = {}  # not listening yet
                if value(samples, "jobqueue_jobs_finished_total", job_type="ledger", status="completed") == 2:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"the worker's metrics never counted both jobs: {samples}")
        finally:
            worker.terminate()
            _, stderr = worker.communicate(timeout=CEILING)
        assert worker.returncode == 0, stderr
    assert value(samples, "jobqueue_worker_slots") == 3
    assert value(samples, "jobqueue_job_run_seconds_count", job_type="ledger", status="completed") == 2
    # Enqueued in the test's process, not the worker's: not counted there.
    assert value(samples, "jobqueue_jobs_enqueued_total", job_type="ledger") is None
    # Queue depth belongs to the server's /metrics, which reads it at scrape time.
    assert not any(name.startswith("jobqueue_queue_") for name, _ in samples)


def test_worker_metrics_refuse_a_non_loopback_address(tmp_path: Path) -> None:
    """Secure by default: the worker's metrics server has no authentication, so it stays local."""
    result = subprocess.run(
        [sys.executable, "-m", "jobqueue", "worker", "--burst", "--metrics-port", str(free_port())],
        env=subprocess_env(DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}", HOST="0.0.0.0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("jobqueue: error: --metrics-port:") and "0.0.0.0 is not a loopback" in line
