"""Unique keys and debounce, on every backend: at most one unfinished job per ``unique_key`` (a
repeat answers it, marked ``Jobqueue-Deduplicated``), also under concurrent requests to several
server processes; a debounced repeat replaces a still-waiting job's data and pushes its run_at."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from jobqueue.client import JobQueueClient
from jobqueue.models import EventKind, JobStatus
from jobqueue.service import JobQueueService
from tests.conftest import assert_error, create
from tests.helpers import run_sql, wait_until
from tests.test_cli_client import jobqueue

HEADER = "jobqueue-deduplicated"


async def post(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await client.post("/api/jobs", json={"job_type": "sync", **body})


async def test_a_repeat_returns_the_unfinished_job_until_it_finished(
    client: httpx.AsyncClient, service: JobQueueService
) -> None:
    first = await post(client, unique_key="k", request_data={"n": 1})
    assert first.status_code == 201 and HEADER not in first.headers
    repeat = await post(client, unique_key="k", request_data={"n": 2})
    assert repeat.status_code == 200 and repeat.headers[HEADER] == "true"
    assert repeat.json()["id"] == first.json()["id"]
    assert repeat.json()["request_data"] == {"n": 1}  # without debounce, left as it was
    assert repeat.json()["unique_key"] == "k"
    other = await post(client, unique_key="other")
    assert other.status_code == 201

    # Once it finished, the key is free again.
    await service.update_job(first.json()["id"], status=JobStatus.COMPLETED)
    again = await post(client, unique_key="k")
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]


async def test_idempotent_replay_wins_over_the_unique_key(client: httpx.AsyncClient) -> None:
    first = await post(client, unique_key="k", idempotency_key="i-1")
    replay = await post(client, unique_key="k", idempotency_key="i-1")
    assert replay.status_code == 200 and HEADER not in replay.headers
    assert replay.json()["id"] == first.json()["id"]
    # Another request (another idempotency key) with the unique key is deduplicated.
    other = await post(client, unique_key="k", idempotency_key="i-2")
    assert other.status_code == 200 and other.headers[HEADER] == "true"
    assert other.json()["id"] == first.json()["id"]


async def test_debounce_replaces_a_waiting_jobs_data_and_pushes_its_run_at(
    client: httpx.AsyncClient, service: JobQueueService
) -> None:
    before = time.time()
    first = (await post(client, unique_key="d", debounce=60, request_data={"v": 1})).json()
    assert first["status"] == "queued"
    first_run_at = (await service.require_job(first["id"])).run_at.timestamp()
    assert before + 60 <= first_run_at <= time.time() + 60
    await asyncio.sleep(0.05)
    repeat = await post(client, unique_key="d", debounce=60, request_data={"v": 2})
    assert repeat.status_code == 200 and repeat.headers[HEADER] == "true"
    job = await service.require_job(first["id"])
    assert job.request_data == {"v": 2}
    assert job.run_at.timestamp() > first_run_at
    assert [e.kind for e in await service.job_events(job.id)] == [EventKind.CREATED, EventKind.UPDATED]
    assert await service.claim_jobs(worker_id="w", limit=5) == []  # not due for a minute


async def test_a_running_job_is_returned_unchanged(client: httpx.AsyncClient, service: JobQueueService) -> None:
    first = (await post(client, unique_key="r", debounce=0.05, request_data={"v": 1})).json()

    async def claimed() -> bool:
        return bool(await service.claim_jobs(worker_id="w", job_types=["sync"], limit=1))

    await wait_until(claimed, "the debounced job becoming due and claimed")
    repeat = await post(client, unique_key="r", debounce=0.05, request_data={"v": 2})
    assert repeat.status_code == 200 and repeat.headers[HEADER] == "true"
    body = repeat.json()
    assert (body["id"], body["status"], body["request_data"]) == (first["id"], "processing", {"v": 1})
    assert body["event_seq"] == 2  # created, claimed: the repeat changed nothing


async def test_invalid_unique_and_debounce_requests_are_refused(client: httpx.AsyncClient) -> None:
    assert_error(await post(client, debounce=5), 422, "debounce")
    assert_error(await post(client, unique_key="k", debounce=5, delay=1), 422, "debounce")
    assert_error(await post(client, unique_key="k", debounce=0), 422, "debounce")
    assert_error(await post(client, unique_key=""), 422, "unique_key")


async def test_concurrent_creates_from_several_processes_make_one_job(
    live_server: Callable[..., str], database_url: str
) -> None:
    urls = [live_server(), live_server()]
    body = {"job_type": "sync", "unique_key": "once"}
    async with httpx.AsyncClient(timeout=30) as http:
        responses = await asyncio.gather(
            *(http.post(f"{urls[n % 2]}/api/jobs", json=body) for n in range(40))
        )
    assert sorted(r.status_code for r in responses) == [200] * 39 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert all(r.headers.get(HEADER) == "true" for r in responses if r.status_code == 200)
    rows = run_sql(database_url, "SELECT count(*) AS n FROM jobs WHERE unique_key = 'once'")
    assert rows[0]["n"] == 1


async def test_python_client_passes_the_new_options(live_server: Callable[..., str]) -> None:
    async with JobQueueClient(live_server()) as jq:
        first = await jq.enqueue("sync", {"v": 1}, unique_key="c", debounce=30)
        again = await jq.enqueue("sync", {"v": 2}, unique_key="c", debounce=30)
        assert again.id == first.id and again.request_data == {"v": 2}
        blocked = await jq.enqueue("sync", depends_on=[first.id], on_dependency_failure="run")
        assert (blocked.status, blocked.depends_on, blocked.on_dependency_failure) == (
            JobStatus.BLOCKED, [first.id], "run",
        )  # fmt: skip
        assert (await jq.get(blocked.id)).depends_on == [first.id]


async def test_create_shows_in_the_http_answer(client: httpx.AsyncClient) -> None:
    job = await create(client, "sync", unique_key="shown")
    assert job["unique_key"] == "shown" and job["depends_on"] is None


def test_cli_enqueue_takes_the_new_options(live_server: Callable[..., str], tmp_path: Path) -> None:
    url = live_server()
    first = jobqueue("enqueue", "sync", "--unique-key", "cli", "--debounce", "30", url=url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    again = jobqueue("enqueue", "sync", "--unique-key", "cli", "--data", '{"v": 2}', "--debounce", "30",
                     url=url, cwd=tmp_path)
    assert again.stdout.strip() == job_id
    blocked = jobqueue(
        "enqueue", "sync", "--depends-on", job_id, "--depends-on", job_id,
        "--on-dependency-failure", "run", "--json", url=url, cwd=tmp_path,
    )  # fmt: skip
    assert blocked.returncode == 0, blocked.stderr
    job = json.loads(blocked.stdout)
    assert (job["status"], job["depends_on"], job["on_dependency_failure"]) == ("blocked", [job_id], "run")
    listed = jobqueue("list", "--status", "blocked", url=url, cwd=tmp_path)
    assert job["id"] in listed.stdout and "blocked" in listed.stdout
