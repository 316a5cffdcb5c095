"""Fencing without holes: a job a worker holds changes only through its claim token.

An unfenced ``PUT`` (or progress report) on a held job is refused with 409 ``job_held``; the
operator's ways to take a job away are cancel and ``PUT ?force=true``, which fences the holder
out (its token stops working). A completion that was not applied never answers 200.
Every test runs on each backend (the ``client`` fixture)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jobqueue.errors import JobHeld
from jobqueue.service import JobQueueService


async def create(client: httpx.AsyncClient, job_type: str = "fenced") -> str:
    response = await client.post("/api/jobs", json={"job_type": job_type})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def claim(client: httpx.AsyncClient, worker_id: str, job_types: list[str] | None = None) -> list[dict[str, Any]]:
    body = {"worker_id": worker_id, "job_types": ["fenced"] if job_types is None else job_types}
    response = await client.post("/api/workers/claim", json=body)
    assert response.status_code == 200, response.text
    return response.json()["jobs"]  # type: ignore[no-any-return]


async def claim_one(client: httpx.AsyncClient, worker_id: str = "w1") -> tuple[str, str]:
    jobs = await claim(client, worker_id)
    assert len(jobs) == 1
    return jobs[0]["job"]["id"], jobs[0]["claim_token"]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code, response.text


async def test_a_forged_completion_by_put_is_refused_and_the_holder_completes(client: httpx.AsyncClient) -> None:
    await create(client)
    job_id, token = await claim_one(client)

    forged = await client.put(f"/api/jobs/{job_id}", json={"status": "completed", "result_data": {"forged": True}})
    assert_error(forged, 409, "job_held")
    job = (await client.get(f"/api/jobs/{job_id}")).json()
    assert (job["status"], job["result_data"]) == ("processing", None)

    done = await client.post(f"/api/jobs/{job_id}/complete", json={"claim_token": token, "result_data": {"real": 1}})
    assert done.status_code == 200, done.text
    assert done.json()["result_data"] == {"real": 1}
    assert (await client.get(f"/api/jobs/{job_id}")).json()["result_data"] == {"real": 1}


async def test_requeue_by_put_is_refused_so_no_second_worker_claims_a_held_job(client: httpx.AsyncClient) -> None:
    await create(client)
    job_id, token = await claim_one(client, "w1")

    assert_error(await client.put(f"/api/jobs/{job_id}", json={"status": "queued"}), 409, "job_held")
    assert await claim(client, "w2") == []
    beat = await client.post(f"/api/jobs/{job_id}/heartbeat", json={"claim_token": token})
    assert beat.status_code == 200, beat.text


async def test_unfenced_progress_and_field_changes_of_a_held_job_are_refused(client: httpx.AsyncClient) -> None:
    await create(client)
    job_id, _ = await claim_one(client)
    for body in ({"message": "hi"}, {"progress": 50}, {"worker_id": "someone-else"}, {"status": "rendering"}):
        assert_error(await client.put(f"/api/jobs/{job_id}", json=body), 409, "job_held")
    assert_error(await client.post(f"/api/jobs/{job_id}/progress", json={"progress": 50}), 409, "job_held")
    job = (await client.get(f"/api/jobs/{job_id}")).json()
    assert (job["progress"], job["message"], job["worker_id"], job["event_seq"]) == (0, None, "w1", 2)


async def test_put_with_the_holders_token_changes_the_job_and_keeps_the_claim(client: httpx.AsyncClient) -> None:
    await create(client)
    job_id, token = await claim_one(client)

    changed = await client.put(
        f"/api/jobs/{job_id}", json={"status": "rendering", "message": "by the holder", "claim_token": token}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["status"], changed.json()["message"]) == ("rendering", "by the holder")
    beat = await client.post(f"/api/jobs/{job_id}/heartbeat", json={"claim_token": token})
    assert beat.status_code == 200, beat.text

    wrong = await client.put(f"/api/jobs/{job_id}", json={"message": "x", "claim_token": "not-the-token"})
    assert_error(wrong, 409, "lease_lost")


async def test_a_forced_put_fences_the_holder_out(client: httpx.AsyncClient) -> None:
    await create(client)
    job_id, token = await claim_one(client, "w1")

    forced = await client.put(
        f"/api/jobs/{job_id}?force=true", json={"status": "completed", "result_data": {"by": "operator"}}
    )
    assert forced.status_code == 200, forced.text
    late = await client.post(f"/api/jobs/{job_id}/complete", json={"claim_token": token, "result_data": {"by": "w1"}})
    assert_error(late, 409, "lease_lost")
    assert (await client.get(f"/api/jobs/{job_id}")).json()["result_data"] == {"by": "operator"}


async def test_a_forced_requeue_hands_the_job_to_the_next_worker_only(client: httpx.AsyncClient) -> None:
    await create(client)
    job_id, first = await claim_one(client, "w1")

    requeued = await client.put(f"/api/jobs/{job_id}?force=true", json={"status": "queued"})
    assert requeued.status_code == 200, requeued.text
    assert_error(await client.post(f"/api/jobs/{job_id}/heartbeat", json={"claim_token": first}), 409, "lease_lost")
    second_id, second = await claim_one(client, "w2")
    assert second_id == job_id and second != first
    assert_error(
        await client.post(f"/api/jobs/{job_id}/complete", json={"claim_token": first, "result_data": 1}),
        409,
        "lease_lost",
    )
    done = await client.post(f"/api/jobs/{job_id}/complete", json={"claim_token": second, "result_data": 2})
    assert done.status_code == 200 and done.json()["result_data"] == 2


async def test_a_repeated_completion_with_another_result_is_refused(client: httpx.AsyncClient) -> None:
    await create(client)
    job_id, token = await claim_one(client)
    url = f"/api/jobs/{job_id}/complete"
    first = await client.post(url, json={"claim_token": token, "result_data": {"n": 1}})
    assert first.status_code == 200, first.text
    replay = await client.post(url, json={"claim_token": token, "result_data": {"n": 1}})
    assert replay.status_code == 200 and replay.json()["result_data"] == {"n": 1}
    assert_error(await client.post(url, json={"claim_token": token, "result_data": {"n": 2}}), 409, "lease_lost")
    assert (await client.get(f"/api/jobs/{job_id}")).json()["result_data"] == {"n": 1}


async def test_force_must_be_a_boolean(client: httpx.AsyncClient) -> None:
    job_id = await create(client)
    response = await client.put(f"/api/jobs/{job_id}?force=maybe", json={"message": "x"})
    assert response.status_code == 422 and response.json()["field"] == "force"


async def test_a_job_started_by_put_stays_driven_by_put(client: httpx.AsyncClient) -> None:
    """Nobody holds a job made active by PUT (no claim token exists): the seed's simple workers
    go on driving it with PUTs."""
    job_id = await create(client)
    for body in ({"status": "processing"}, {"progress": 50}, {"status": "completed", "result_data": 1}):
        response = await client.put(f"/api/jobs/{job_id}", json=body)
        assert response.status_code == 200, response.text


async def test_a_claim_of_no_job_types_claims_nothing(client: httpx.AsyncClient) -> None:
    await create(client)
    assert await claim(client, "w1", job_types=[]) == []
    assert len(await claim(client, "w1")) == 1


async def test_the_python_api_refuses_an_unfenced_change_of_a_held_job(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("fenced")
    claimed = await service.get_next_job()
    assert claimed is not None
    with pytest.raises(JobHeld):
        await service.update_job(job_id, status="completed", result_data={"forged": True})
    job = await service.update_job(job_id, message="mine", claim_token=claimed.claim_token)
    assert job.message == "mine"
    forced = await service.update_job(job_id, status="queued", force=True)
    assert forced.status.value == "queued"
