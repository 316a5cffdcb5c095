"""The remote-worker HTTP protocol: claim (long poll), heartbeat, progress, complete, fail,
release and cancel, all fenced by the claim token; plus retry, delays and idempotent enqueue."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from jobqueue.service import JobQueueService
from tests.conftest import make_settings

DEADLINE = 30.0


async def create(client: httpx.AsyncClient, job_type: str = "remote", **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/jobs", json={"job_type": job_type, **fields})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def claim(client: httpx.AsyncClient, **fields: Any) -> list[dict[str, Any]]:
    body = {"worker_id": "remote-1", "job_types": ["remote"], **fields}
    response = await client.post("/api/workers/claim", json=body, timeout=DEADLINE)
    assert response.status_code == 200, response.text
    assert response.json()["lease_seconds"] > 0
    return response.json()["jobs"]  # type: ignore[no-any-return]


async def claim_one(client: httpx.AsyncClient, **fields: Any) -> tuple[str, str]:
    jobs = await claim(client, **fields)
    assert len(jobs) == 1
    return jobs[0]["job"]["id"], jobs[0]["claim_token"]


async def test_claim_returns_due_jobs_of_the_requested_types_with_a_token(client: httpx.AsyncClient) -> None:
    wanted = [await create(client, priority=p) for p in (1, 5, 3)]
    await create(client, job_type="other")
    jobs = await claim(client, limit=10)
    assert [j["job"]["id"] for j in jobs] == [wanted[1]["id"], wanted[2]["id"], wanted[0]["id"]]
    for item in jobs:
        assert item["job"]["status"] == "processing"
        assert item["job"]["worker_id"] == "remote-1"
        assert item["job"]["attempts"] == 1
        assert item["job"]["lease_expires_at"] is not None
        assert len(item["claim_token"]) == 32
    assert len({j["claim_token"] for j in jobs}) == 3
    assert await claim(client) == []  # nothing left of that type; "other" was not touched


async def test_an_empty_list_of_job_types_claims_nothing(client: httpx.AsyncClient) -> None:
    job = await create(client)
    started = time.monotonic()
    assert await claim(client, job_types=[], wait=0.3) == []
    assert time.monotonic() - started >= 0.3  # the wait is honoured: a worker loop does not spin
    assert (await client.get(f"/api/jobs/{job['id']}")).json()["status"] == "queued"
    assert [j["job"]["id"] for j in await claim(client, job_types=None)] == [job["id"]]


async def test_long_poll_claim_returns_as_soon_as_a_job_is_enqueued(
    database_url: str, app_client_factory: Callable[..., Any]
) -> None:
    # A poll interval far beyond the wait: only the enqueue's wake-up can answer early.
    settings = make_settings(database_url, poll_interval=30.0)
    async with app_client_factory(settings) as client:
        started = time.monotonic()
        waiting = asyncio.create_task(claim(client, wait=20))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # parked in the long poll, not answered empty
        created = await create(client)
        jobs = await asyncio.wait_for(waiting, DEADLINE)
        assert [j["job"]["id"] for j in jobs] == [created["id"]]
        assert time.monotonic() - started < 10  # woken, not timed out (the wait was 20 s)


async def test_long_poll_with_nothing_to_do_answers_empty_after_the_wait(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    assert await claim(client, wait=0.3) == []
    assert time.monotonic() - started >= 0.3


async def test_heartbeat_progress_and_complete_with_the_token(client: httpx.AsyncClient) -> None:
    job_id = (await create(client, request_data={"n": 1}))["id"]
    job_id, token = await claim_one(client)
    before = (await client.get(f"/api/jobs/{job_id}")).json()["lease_expires_at"]

    beat = await client.post(f"/api/jobs/{job_id}/heartbeat", json={"claim_token": token})
    assert beat.status_code == 200
    assert beat.json()["cancel_requested"] is False
    after = (await client.get(f"/api/jobs/{job_id}")).json()["lease_expires_at"]
    assert after >= before

    progress = await client.post(
        f"/api/jobs/{job_id}/progress",
        json={"claim_token": token, "progress": 40, "message": "rendering", "status": "rendering"},
    )
    assert progress.status_code == 200, progress.text
    assert progress.json()["progress"] == 40
    assert progress.json()["status"] == "rendering"

    done = await client.post(
        f"/api/jobs/{job_id}/complete", json={"claim_token": token, "result_data": {"url": "/x"}}
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    assert done.json()["result_data"] == {"url": "/x"}
    assert done.json()["progress"] == 100
    assert done.json()["lease_expires_at"] is None

    # Re-sending the completion (a lost response) gets the same answer; other writes are refused.
    again = await client.post(
        f"/api/jobs/{job_id}/complete", json={"claim_token": token, "result_data": {"url": "/x"}}
    )
    assert again.status_code == 200
    assert again.json()["completed_at"] == done.json()["completed_at"]
    late_beat = await client.post(f"/api/jobs/{job_id}/heartbeat", json={"claim_token": token})
    assert late_beat.status_code == 409
    assert late_beat.json()["error"] == "lease_lost"


async def test_fail_retries_with_backoff_keeps_the_error_then_fails_for_good(
    client: httpx.AsyncClient, service: JobQueueService
) -> None:
    job_id = (await create(client, max_attempts=2))["id"]
    _, token = await claim_one(client)
    failed_at = time.time()
    first = await client.post(f"/api/jobs/{job_id}/fail", json={"claim_token": token, "error": "disk full"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "queued"
    assert body["attempts"] == 1
    assert body["error"] == "disk full"
    assert body["worker_id"] is None
    # The retry is pushed forward by the backoff (at least half the base delay, jittered).
    run_at = datetime.fromisoformat(body["run_at"]).timestamp()
    assert run_at >= failed_at + service.settings.retry_base_delay * 0.5 - 0.01

    async def reclaim() -> tuple[str, str]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            jobs = await claim(client, wait=1)
            if jobs:
                return jobs[0]["job"]["id"], jobs[0]["claim_token"]
        raise AssertionError("the retry never became claimable")

    again_id, second_token = await reclaim()
    assert again_id == job_id and second_token != token
    final = await client.post(
        f"/api/jobs/{job_id}/fail", json={"claim_token": second_token, "error": "disk still full"}
    )
    assert final.json()["status"] == "failed"
    assert final.json()["attempts"] == 2
    assert final.json()["error"] == "disk still full"


async def test_fail_without_retry_ends_the_job_at_once(client: httpx.AsyncClient) -> None:
    job_id = (await create(client, max_attempts=5))["id"]
    _, token = await claim_one(client)
    response = await client.post(
        f"/api/jobs/{job_id}/fail", json={"claim_token": token, "error": "bad input", "retry": False}
    )
    assert response.json()["status"] == "failed"
    assert response.json()["attempts"] == 1


async def test_stale_token_is_refused_with_409_after_the_job_was_reclaimed(
    database_url: str, app_client_factory: Callable[..., Any]
) -> None:
    # The app's own reaper returns the job to the queue once the short lease lapses.
    settings = make_settings(database_url, lease_seconds=0.5, poll_interval=0.05)
    async with app_client_factory(settings) as client:
        job_id = (await create(client))["id"]
        _, stale = await claim_one(client)
        deadline = time.monotonic() + DEADLINE
        jobs: list[dict[str, Any]] = []
        while not jobs and time.monotonic() < deadline:
            jobs = await claim(client, worker_id="remote-2", wait=1)
        assert jobs, "the job was never reclaimed after its lease lapsed"
        assert jobs[0]["job"]["id"] == job_id and jobs[0]["job"]["attempts"] == 2
        current = jobs[0]["claim_token"]

        for path, extra in (
            ("heartbeat", {}),
            ("progress", {"progress": 90}),
            ("complete", {"result_data": {"from": "stale"}}),
            ("fail", {"error": "stale failure"}),
            ("release", {}),
            ("cancel", {}),
        ):
            response = await client.post(f"/api/jobs/{job_id}/{path}", json={"claim_token": stale, **extra})
            assert response.status_code == 409, (path, response.text)
            assert response.json()["error"] == "lease_lost"
            assert "another claim" in response.json()["detail"]

        unchanged = (await client.get(f"/api/jobs/{job_id}")).json()
        assert unchanged["status"] == "processing" and unchanged["worker_id"] == "remote-2"
        assert unchanged["progress"] == 0 and unchanged["error"] is not None  # the reaper's note
        done = await client.post(
            f"/api/jobs/{job_id}/complete", json={"claim_token": current, "result_data": {"from": "current"}}
        )
        assert done.status_code == 200
        assert done.json()["result_data"] == {"from": "current"}
        assert done.json()["error"] is None


async def test_release_hands_the_job_back_without_counting_the_attempt(client: httpx.AsyncClient) -> None:
    job_id = (await create(client))["id"]
    _, token = await claim_one(client)
    released = await client.post(f"/api/jobs/{job_id}/release", json={"claim_token": token})
    assert released.status_code == 200
    assert released.json()["status"] == "queued"
    assert released.json()["attempts"] == 0
    assert released.json()["worker_id"] is None
    again_id, again_token = await claim_one(client)
    assert again_id == job_id and again_token != token


async def test_cancel_of_a_held_job_is_acknowledged_by_its_holder(client: httpx.AsyncClient) -> None:
    job_id = (await create(client))["id"]
    _, token = await claim_one(client)
    requested = await client.post(f"/api/jobs/{job_id}/cancel")
    assert requested.status_code == 200
    assert requested.json()["status"] == "processing"
    assert requested.json()["cancel_requested"] is True

    beat = await client.post(f"/api/jobs/{job_id}/heartbeat", json={"claim_token": token})
    assert beat.json()["cancel_requested"] is True
    acknowledged = await client.post(f"/api/jobs/{job_id}/cancel", json={"claim_token": token})
    assert acknowledged.status_code == 200
    assert acknowledged.json()["status"] == "cancelled"
    assert acknowledged.json()["lease_expires_at"] is None


async def test_cancel_of_a_waiting_job_is_immediate(client: httpx.AsyncClient) -> None:
    job_id = (await create(client))["id"]
    response = await client.post(f"/api/jobs/{job_id}/cancel")
    assert response.json()["status"] == "cancelled"
    assert response.json()["completed_at"] is not None
    assert await claim(client) == []
    again = await client.post(f"/api/jobs/{job_id}/cancel")
    assert again.status_code == 409


async def test_retry_puts_failed_and_cancelled_jobs_back_in_the_queue(client: httpx.AsyncClient) -> None:
    cancelled = (await create(client))["id"]
    await client.post(f"/api/jobs/{cancelled}/cancel")
    failed = (await create(client, max_attempts=1))["id"]
    _, token = await claim_one(client)
    await client.post(f"/api/jobs/{failed}/fail", json={"claim_token": token, "error": "boom"})
    assert (await client.get(f"/api/jobs/{failed}")).json()["status"] == "failed"

    for job_id in (cancelled, failed):
        retried = await client.post(f"/api/jobs/{job_id}/retry")
        assert retried.status_code == 200, retried.text
        body = retried.json()
        assert body["status"] == "queued"
        assert body["attempts"] == 0
        assert body["error"] is None
        assert body["cancel_requested"] is False
    assert {j["job"]["id"] for j in await claim(client, limit=5)} == {cancelled, failed}

    queued = (await create(client))["id"]
    refused = await client.post(f"/api/jobs/{queued}/retry")
    assert refused.status_code == 409
    assert refused.json()["error"] == "invalid_transition"
    missing = await client.post("/api/jobs/no-such-job/retry")
    assert missing.status_code == 404


async def test_delayed_job_is_not_claimed_before_it_is_due(client: httpx.AsyncClient) -> None:
    later = await create(client, delay=3600)
    scheduled = await create(client, run_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    due = await create(client, run_at=(datetime.now(UTC) - timedelta(seconds=1)).isoformat())
    assert [j["job"]["id"] for j in await claim(client, limit=10)] == [due["id"]]
    for job in (later, scheduled):
        assert datetime.fromisoformat(job["run_at"]) > datetime.now(UTC) + timedelta(minutes=59)
    stats = (await client.get("/api/jobs/stats")).json()
    assert stats["scheduled"] == 2
    both = await client.post("/api/jobs", json={"job_type": "remote", "delay": 5, "run_at": due["run_at"]})
    assert both.status_code == 422


async def test_claim_body_is_validated(client: httpx.AsyncClient) -> None:
    for body in ({}, {"worker_id": "w", "limit": 0}, {"worker_id": "w", "wait": 61}, {"worker_id": "w", "x": 1}):
        response = await client.post("/api/workers/claim", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"] == "validation_error"


async def test_idempotent_enqueue_under_100_concurrent_identical_requests(
    live_server: Callable[..., str],
) -> None:
    base = live_server(RUN_WORKER="false")
    body = {"job_type": "remote", "request_data": {"video": 7}}
    headers = {"Idempotency-Key": "upload-7"}
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=base, timeout=DEADLINE, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.post("/api/jobs", json=body, headers=headers) for _ in range(100))
        )
        assert Counter(r.status_code for r in responses) == {201: 1, 200: 99}
        assert len({r.json()["id"] for r in responses}) == 1
        listing = (await client.get("/api/jobs", params={"job_type": "remote"})).json()
        assert listing["total"] == 1
        assert listing["items"][0]["idempotency_key"] == "upload-7"

        different = await client.post(
            "/api/jobs", json={**body, "request_data": {"video": 8}}, headers=headers
        )
        assert different.status_code == 422
        assert different.json()["error"] == "idempotency_conflict"
        assert "upload-7" in different.json()["detail"]

        # The key may also travel in the body.
        by_field = await client.post("/api/jobs", json={**body, "idempotency_key": "upload-7"})
        assert by_field.status_code == 200
        assert by_field.json()["id"] == responses[0].json()["id"]


async def test_idempotency_header_and_field_must_agree(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/jobs",
        json={"job_type": "remote", "idempotency_key": "a"},
        headers={"Idempotency-Key": "b"},
    )
    assert response.status_code == 422


async def test_remote_worker_over_real_http_long_polls_runs_and_completes(
    live_server: Callable[..., str],
) -> None:
    # A poll interval far beyond the wait: the enqueue over HTTP must wake the parked claim.
    base = live_server(RUN_WORKER="false", POLL_INTERVAL="30", LEASE_SECONDS="5")
    async with httpx.AsyncClient(base_url=base, timeout=DEADLINE) as client:
        started = time.monotonic()
        waiting = asyncio.create_task(
            client.post("/api/workers/claim", json={"worker_id": "far-away", "job_types": ["remote"], "wait": 20})
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        created = await create(client, request_data={"x": 2})
        claimed = (await asyncio.wait_for(waiting, DEADLINE)).json()
        assert time.monotonic() - started < 10
        assert claimed["lease_seconds"] == 5
        [item] = claimed["jobs"]
        job_id, token = item["job"]["id"], item["claim_token"]
        assert job_id == created["id"] and item["job"]["request_data"] == {"x": 2}

        beat = await client.post(f"/api/jobs/{job_id}/heartbeat", json={"claim_token": token})
        assert beat.json() == {"cancel_requested": False, "lease_seconds": 5}
        progress = await client.post(f"/api/jobs/{job_id}/progress", json={"claim_token": token, "progress": 50})
        assert progress.json()["progress"] == 50
        done = await client.post(f"/api/jobs/{job_id}/complete", json={"claim_token": token, "result_data": 4})
        assert done.json()["status"] == "completed" and done.json()["result_data"] == 4


async def test_failed_attempt_of_a_job_whose_cancel_was_requested_is_not_retried(
    client: httpx.AsyncClient,
) -> None:
    job_id = (await create(client, max_attempts=3))["id"]
    _, token = await claim_one(client)
    await client.post(f"/api/jobs/{job_id}/cancel")
    failed = await client.post(f"/api/jobs/{job_id}/fail", json={"claim_token": token, "error": "broke"})
    assert failed.status_code == 200
    assert failed.json()["status"] == "failed"
    assert failed.json()["error"] == "broke"
    assert await claim(client) == []


async def _hang_up_after(base: str, request: bytes) -> None:
    """Send ``request`` over a raw connection, give the server time to park it, then close."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    await asyncio.sleep(0.5)
    assert not reader.at_eof()  # still waiting: nothing was answered yet
    writer.close()
    await writer.wait_closed()


async def test_a_long_poll_whose_worker_hung_up_claims_nothing(live_server: Callable[..., str]) -> None:
    # Without noticing the hang-up, the parked claim took the next job for nobody: it then sat
    # under a lease nobody renewed, and its retry cost an attempt.
    base = live_server(RUN_WORKER="false", POLL_INTERVAL="30", LEASE_SECONDS="30")
    body = b'{"worker_id": "gone", "job_types": ["remote"], "wait": 30}'
    await _hang_up_after(
        base,
        b"POST /api/workers/claim HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    await asyncio.sleep(0.5)  # the server sees the hang-up (within milliseconds; margin for load)
    async with httpx.AsyncClient(base_url=base, timeout=DEADLINE) as client:
        created = await create(client)
        await asyncio.sleep(1.0)  # a parked claim would be woken by this enqueue at once
        job = (await client.get(f"/api/jobs/{created['id']}")).json()
        assert (job["status"], job["attempts"]) == ("queued", 0)
        # A worker that is still there gets it.
        claimed = await client.post(
            "/api/workers/claim", json={"worker_id": "here", "job_types": ["remote"], "wait": 5}
        )
        assert [item["job"]["id"] for item in claimed.json()["jobs"]] == [created["id"]]
