"""Bulk operations (issue 12, item 7) on every backend: a batch of jobs in one request and one
transaction (per-item results by default, all or nothing with ``atomic``), and the bounded bulk
retry, cancel and purge, each written as events (checked in the events table)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from jobqueue.client import ApiError, JobQueueClient
from jobqueue.models import MAX_BATCH_JOBS, JobStatus
from jobqueue.service import JobQueueService
from tests.conftest import assert_error, subprocess_env
from tests.helpers import stored_events


def events_of(database_url: str, kind: str) -> list[str]:
    """The job ids of the stored events of one kind, in order."""
    return [e["job_id"] for e in stored_events(database_url) if e["kind"] == kind]


async def batch(client: httpx.AsyncClient, jobs: list[dict[str, Any]], **body: Any) -> httpx.Response:
    return await client.post("/api/jobs/batch", json={"jobs": jobs, **body})


async def finish(service: JobQueueService, job_type: str, count: int, outcome: str) -> list[str]:
    """``count`` jobs of ``job_type`` that end ``completed``, ``failed`` or ``cancelled``."""
    ids = [await service.enqueue_job(job_type, {"n": n}) for n in range(count)]
    for job_id in ids:
        if outcome == "cancelled":
            await service.cancel_job(job_id)
            continue
        claimed = await service.claim_jobs(worker_id="w", job_types=[job_type])
        assert [c.job.id for c in claimed] == [job_id]
        token = claimed[0].claim_token
        if outcome == "completed":
            await service.complete_job(job_id, token, {"ok": True})
        else:
            await service.fail_job(job_id, token, "boom", retry=False)
    return ids


# -- POST /api/jobs/batch ---------------------------------------------------------------------------


async def test_batch_stores_the_valid_items_and_reports_the_refused_one(
    client: httpx.AsyncClient, database_url: str
) -> None:
    jobs = [
        {"job_type": "thumb", "request_data": {"n": 0}},
        {"job_type": "thumb", "priority": "high"},
        {"job_type": "thumb", "request_data": {"n": 2}, "priority": 5.0},
        {"job_type": "thumb", "delay": 5, "run_at": "2030-01-01T00:00:00Z"},
    ]
    response = await batch(client, jobs)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["index"] for item in body["items"]] == [0, 1, 2, 3]
    assert (body["created"], body["existing"], body["refused"]) == (2, 0, 2)
    assert body["items"][1]["error"]["error"] == "validation_error"
    assert body["items"][1]["error"]["field"] == "priority"
    assert body["items"][3]["error"]["field"] == "delay"
    created = [body["items"][0]["job"], body["items"][2]["job"]]
    assert [job["request_data"] for job in created] == [{"n": 0}, {"n": 2}]
    assert created[1]["priority"] == 5
    assert all(item.get("created") for item in (body["items"][0], body["items"][2]))
    listing = (await client.get("/api/jobs")).json()
    assert sorted(job["id"] for job in listing["items"]) == sorted(job["id"] for job in created)
    assert sorted(events_of(database_url, "created")) == sorted(job["id"] for job in created)


async def test_an_atomic_batch_with_one_bad_item_stores_nothing(client: httpx.AsyncClient, database_url: str) -> None:
    jobs = [{"job_type": "thumb"}, {"job_type": "thumb", "max_attempts": 0}, {"job_type": "thumb"}]
    response = await batch(client, jobs, atomic=True)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "batch_refused"
    assert "1 of 3" in body["detail"]
    assert [(item["index"], item["error"]["field"]) for item in body["items"]] == [(1, "max_attempts")]
    assert (await client.get("/api/jobs")).json()["total"] == 0
    assert stored_events(database_url) == []


async def test_idempotency_keys_in_a_batch_replay_or_refuse_per_item(
    client: httpx.AsyncClient, database_url: str
) -> None:
    first = await client.post("/api/jobs", json={"job_type": "thumb", "idempotency_key": "k1", "request_data": {"a": 1}})
    assert first.status_code == 201
    jobs = [
        {"job_type": "thumb", "idempotency_key": "k1", "request_data": {"a": 1}},  # a replay
        {"job_type": "thumb", "idempotency_key": "k1", "request_data": {"a": 2}},  # reused: refused
        {"job_type": "thumb", "idempotency_key": "k2"},
        {"job_type": "thumb", "idempotency_key": "k2"},  # a repeat within the batch
    ]
    atomic = await batch(client, jobs, atomic=True)
    assert atomic.status_code == 422, atomic.text
    assert [item["index"] for item in atomic.json()["items"]] == [1]
    assert atomic.json()["items"][0]["error"]["error"] == "idempotency_conflict"
    assert (await client.get("/api/jobs")).json()["total"] == 1  # k2 was not stored either

    response = await batch(client, jobs)
    body = response.json()
    assert (body["created"], body["existing"], body["refused"]) == (1, 2, 1)
    items = body["items"]
    assert items[0]["job"]["id"] == first.json()["id"] and items[0]["created"] is False
    assert items[1]["error"]["error"] == "idempotency_conflict"
    assert items[2]["created"] is True and items[3]["created"] is False
    assert items[3]["job"]["id"] == items[2]["job"]["id"]
    again = (await batch(client, jobs)).json()  # a resend creates nothing new
    assert (again["created"], again["existing"]) == (0, 3)
    assert len(events_of(database_url, "created")) == 2


async def test_a_batch_holds_up_to_the_limit_in_one_transaction(client: httpx.AsyncClient) -> None:
    too_many = await batch(client, [{"job_type": "bulk"}] * (MAX_BATCH_JOBS + 1))
    assert_error(too_many, 422, "jobs")
    assert (await client.get("/api/jobs")).json()["total"] == 0
    assert_error(await batch(client, []), 422, "jobs")

    response = await batch(client, [{"job_type": "bulk", "request_data": {"n": n}} for n in range(MAX_BATCH_JOBS)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["created"] == MAX_BATCH_JOBS
    # One write op for all of them: they share the transaction's clock.
    assert len({item["job"]["created_at"] for item in body["items"]}) == 1
    assert (await client.get("/api/jobs/stats")).json()["by_status"]["queued"] == MAX_BATCH_JOBS


# -- bulk retry, cancel and purge ----------------------------------------------------------------


async def test_retry_failed_is_bounded_and_writes_retried_events(
    client: httpx.AsyncClient, service: JobQueueService, database_url: str
) -> None:
    failed = await finish(service, "resize", 5, "failed")
    other = await finish(service, "other", 1, "failed")
    first = (await client.post("/api/job-types/resize/retry-failed?limit=3")).json()
    assert (first["affected"], first["more"]) == (3, True)
    assert set(first["job_ids"]) == set(failed[:3])  # oldest failure first
    second = (await client.post("/api/job-types/resize/retry-failed?limit=3")).json()
    assert (second["affected"], second["more"]) == (2, False)
    third = (await client.post("/api/job-types/resize/retry-failed")).json()
    assert (third["affected"], third["more"]) == (0, False)
    for job_id in failed:
        job = await service.require_job(job_id)
        assert (job.status, job.attempts, job.error) == (JobStatus.QUEUED, 0, None)
    assert (await service.require_job(other[0])).status is JobStatus.FAILED
    assert sorted(events_of(database_url, "retried")) == sorted(failed)
    assert_error(await client.post("/api/job-types/resize/retry-failed?limit=0"), 422, "limit")
    assert_error(await client.post("/api/job-types/resize/retry-failed?limit=1001"), 422, "limit")


async def test_cancel_waiting_is_bounded_leaves_running_jobs_and_writes_cancelled_events(
    client: httpx.AsyncClient, service: JobQueueService, database_url: str
) -> None:
    running = await service.enqueue_job("render", priority=10)
    assert [c.job.id for c in await service.claim_jobs(worker_id="w", job_types=["render"])] == [running]
    waiting = [await service.enqueue_job("render", {"n": n}) for n in range(4)]
    other = await service.enqueue_job("other")
    first = (await client.post("/api/job-types/render/cancel-waiting?limit=3")).json()
    assert (first["affected"], first["more"], set(first["job_ids"])) == (3, True, set(waiting[:3]))
    second = (await client.post("/api/job-types/render/cancel-waiting")).json()
    assert (second["affected"], second["more"], second["job_ids"]) == (1, False, waiting[3:])
    for job_id in waiting:
        job = await service.require_job(job_id)
        assert job.status is JobStatus.CANCELLED and job.completed_at is not None
    assert (await service.require_job(running)).status is JobStatus.PROCESSING
    assert (await service.require_job(other)).status is JobStatus.QUEUED
    assert sorted(events_of(database_url, "cancelled")) == sorted(waiting)


async def test_purge_deletes_finished_jobs_by_filter_with_their_events(
    client: httpx.AsyncClient, service: JobQueueService, database_url: str
) -> None:
    completed = await finish(service, "report", 3, "completed")
    cancelled = await finish(service, "report", 2, "cancelled")
    failed_other = await finish(service, "other", 1, "failed")
    waiting = await service.enqueue_job("report")
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()

    none = await client.delete("/api/jobs", params={"status": "completed", "before": past})
    assert none.json() == {"affected": 0, "more": False, "job_ids": []}
    first = (await client.delete("/api/jobs", params={"status": "completed,cancelled", "job_type": "report", "before": future, "limit": 4})).json()
    assert (first["affected"], first["more"]) == (4, True)
    second = (await client.delete("/api/jobs", params=[("status", "completed"), ("status", "cancelled"), ("job_type", "report")])).json()
    assert (second["affected"], second["more"]) == (1, False)
    assert sorted(first["job_ids"] + second["job_ids"]) == sorted(completed + cancelled)
    remaining = {job.id for job in (await service.list_jobs(limit=100))[0]}
    assert remaining == {failed_other[0], waiting}
    assert {e["job_id"] for e in stored_events(database_url)} == remaining  # events went with them

    assert_error(await client.delete("/api/jobs"), 422, "status")
    assert_error(await client.delete("/api/jobs", params={"status": "queued"}), 422, "status")
    assert_error(await client.delete("/api/jobs", params={"status": "failed", "before": "yesterday"}), 422, "before")
    assert_error(await client.delete("/api/jobs", params={"status": "failed", "before": ""}), 422, "before")
    assert_error(await client.delete("/api/jobs", params={"status": "failed", "limit": "1001"}), 422, "limit")
    assert (await service.require_job(waiting)).status is JobStatus.QUEUED


# -- the Python client and the CLI, against a real server -----------------------------------------


def cli(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue", *args],
        env=subprocess_env(JOBQUEUE_URL=url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_python_client_and_cli_bulk_commands(live_server: Callable[..., str], tmp_path: Path) -> None:
    url = live_server(RUN_WORKER="false")
    async with JobQueueClient(url) as jq:
        result = await jq.enqueue_many([{"job_type": "mail", "request_data": {"to": n}} for n in range(3)] + [{"job_type": ""}])
        assert (result.created, result.refused) == (3, 1)
        try:
            await jq.enqueue_many([{"job_type": "mail"}, {"priority": 1}], atomic=True)
        except ApiError as exc:
            assert exc.status_code == 422 and exc.code == "batch_refused"
        else:
            raise AssertionError("an atomic batch with a bad item was accepted")
        cancelled = await jq.cancel_waiting("mail", limit=2)
        assert (cancelled.affected, cancelled.more) == (2, True)
        purged = await jq.purge("cancelled", job_type="mail")
        assert (purged.affected, purged.more) == (2, False)
        assert (await jq.list(job_type="mail")).total == 1

    lines = "\n".join(json.dumps({"job_type": "mail", "request_data": {"n": n}}) for n in range(3))
    done = cli(url, "enqueue-batch", "-", stdin=lines + "\n")
    assert done.returncode == 0, done.stderr
    ids = done.stdout.splitlines()[:3]
    assert done.stdout.splitlines()[3] == "created 3, existing 0, refused 0"
    assert httpx.get(f"{url}/api/jobs/{ids[0]}").status_code == 200
    array = tmp_path / "jobs.json"
    array.write_text(json.dumps([{"job_type": "mail"}, {"job_type": "mail", "priority": "x"}]))
    partial = cli(url, "enqueue-batch", str(array))
    assert partial.returncode == 2
    assert "job #1 refused" in partial.stderr and "created 1, existing 0, refused 1" in partial.stdout

    cancel = cli(url, "cancel-waiting", "mail", "--limit", "2")
    assert cancel.stdout == "2 job(s) cancelled; more remain: run it again\n", cancel.stderr
    cancel_all = cli(url, "cancel-waiting", "mail", "--json")
    assert json.loads(cancel_all.stdout)["affected"] == 3
    assert cli(url, "retry-failed", "mail").stdout == "0 job(s) queued again\n"
    purge = cli(url, "purge", "--status", "cancelled", "--type", "mail", "--before", datetime.now(UTC).isoformat())
    assert purge.stdout == "5 job(s) deleted\n", purge.stderr
    assert httpx.get(f"{url}/api/jobs").json()["total"] == 0


async def test_batch_keeps_concurrency_keys_and_refuses_dependencies_and_unique_keys(
    client: httpx.AsyncClient,
) -> None:
    parent = (await client.post("/api/jobs", json={"job_type": "thumb"})).json()["id"]
    jobs = [
        {"job_type": "thumb", "concurrency_key": "tenant-a"},
        {"job_type": "thumb", "depends_on": [parent]},
        {"job_type": "thumb", "unique_key": "one"},
        {"job_type": "thumb", "concurrency_key": "tenant-b", "idempotency_key": "k-1"},
    ]
    response = await batch(client, jobs)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["job"]["concurrency_key"] for item in (items[0], items[3])] == ["tenant-a", "tenant-b"]
    # Their fate is decided from other jobs' rows, one job at a time: one by one they go.
    assert [(item["error"]["error"], item["error"]["field"]) for item in items[1:3]] == [
        ("validation_error", "depends_on"),
        ("validation_error", "unique_key"),
    ]
    assert response.json()["created"] == 2
    # A replay of the keyed item alone, through the single-job route, is the same request.
    replay = await client.post(
        "/api/jobs", json={"job_type": "thumb", "concurrency_key": "tenant-b", "idempotency_key": "k-1"}
    )
    assert replay.status_code == 200 and replay.json()["id"] == items[3]["job"]["id"]

    atomic = await batch(client, jobs, atomic=True)
    assert atomic.status_code == 422 and atomic.json()["error"] == "batch_refused"
    assert [item["index"] for item in atomic.json()["items"]] == [1, 2]
