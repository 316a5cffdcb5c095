"""The REST contract, endpoint by endpoint: success and error paths through the app with its
lifespan entered, on every backend."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
import pytest

from jobqueue.api.app import create_app
from jobqueue.handlers.generation import MODELS
from jobqueue.models import JobStatus
from jobqueue.service import MAX_PAGE_SIZE
from jobqueue.settings import Settings, database_path

from .conftest import assert_error, create, make_settings, sqlite_only
from .helpers import drop_database, drop_table

JOB_FIELDS = {
    "id",
    "status",
    "progress",
    "job_type",
    "priority",
    "request_data",
    "result_data",
    "message",
    "error",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "worker_id",
}


@pytest.fixture
def settings(database_url: str) -> Settings:
    """A long lease: jobs these tests move to an active status by hand have no worker renewing
    them, and the reaper must not requeue them while a slow machine runs the test."""
    return make_settings(database_url, lease_seconds=600.0, poll_interval=0.05)


def parse_ts(value: str) -> datetime:
    ts = datetime.fromisoformat(value)
    assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0, value  # type: ignore[union-attr]
    return ts


async def put(client: httpx.AsyncClient, job_id: str, **body: Any) -> httpx.Response:
    return await client.put(f"/api/jobs/{job_id}", json=body)


async def finished(client: httpx.AsyncClient, status: str = "completed", **body: Any) -> dict[str, Any]:
    job = await create(client, **body)
    response = await put(client, job["id"], status=status)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# -- POST /api/jobs ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/jobs", "/api/jobs/"])
async def test_create_returns_201_with_the_full_job(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(
        path, json={"job_type": "thumbnail", "request_data": {"w": 64, "tags": ["a"]}, "priority": 7}
    )
    assert response.status_code == 201
    job = response.json()
    assert JOB_FIELDS <= set(job)
    assert job["status"] == "queued"
    assert job["progress"] == 0
    assert job["job_type"] == "thumbnail"
    assert job["priority"] == 7
    assert job["request_data"] == {"w": 64, "tags": ["a"]}
    for empty in ("result_data", "message", "error", "started_at", "completed_at", "worker_id"):
        assert job[empty] is None, empty
    assert parse_ts(job["created_at"]) == parse_ts(job["updated_at"])
    fetched = await client.get(f"/api/jobs/{job['id']}")
    assert fetched.json() == job


@pytest.mark.parametrize("prefer", ["return=minimal", "respond-async, Return=Minimal; x=1"])
async def test_create_with_prefer_return_minimal_answers_only_id_and_status(
    client: httpx.AsyncClient, prefer: str
) -> None:
    response = await client.post("/api/jobs", json={"job_type": "thumbnail"}, headers={"Prefer": prefer})
    assert response.status_code == 201
    assert response.headers["preference-applied"] == "return=minimal"
    body = response.json()
    assert body == {"id": body["id"], "status": "queued"}
    job = (await client.get(f"/api/jobs/{body['id']}")).json()
    assert job["job_type"] == "thumbnail" and job["status"] == "queued"


async def test_prefer_return_minimal_replay_is_200_with_the_first_id(client: httpx.AsyncClient) -> None:
    headers = {"Prefer": "return=minimal", "Idempotency-Key": "once"}
    first = await client.post("/api/jobs", json={"job_type": "thumbnail"}, headers=headers)
    again = await client.post("/api/jobs", json={"job_type": "thumbnail"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()


async def test_other_preferences_get_the_whole_job(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/jobs", json={"job_type": "thumbnail"}, headers={"Prefer": "return=representation"})
    assert response.status_code == 201
    assert "preference-applied" not in response.headers
    assert response.json()["job_type"] == "thumbnail"


async def test_create_defaults(client: httpx.AsyncClient) -> None:
    job = await create(client)
    assert job["priority"] == 0
    assert job["request_data"] is None


async def test_create_ids_are_unique(client: httpx.AsyncClient) -> None:
    ids = {(await create(client))["id"] for _ in range(20)}
    assert len(ids) == 20


async def test_create_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/jobs", content=b'{"job_type": "x"}', headers={"content-type": "text/plain"}
    )
    assert_error(response, 415)
    missing = await client.post("/api/jobs", content=b'{"job_type": "x"}')
    assert_error(missing, 415)


async def test_create_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/jobs", content=b'{"job_type": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 400)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"job_type": ""}, "job_type"),
        ({"job_type": "x" * 101}, "job_type"),
        ({}, "job_type"),
        ({"job_type": 5}, "job_type"),
        ({"job_type": "x", "priority": "high"}, "priority"),
        ({"job_type": "x", "priority": 1.5}, "priority"),
        ({"job_type": "x", "request_data": [1, 2]}, "request_data"),
        ({"job_type": "x", "request_data": "text"}, "request_data"),
        ({"job_type": "x", "surprise": 1}, "surprise"),
        ({"job_type": "x", "priority": 10**7}, "priority"),
        ({"job_type": "x", "delay": -1}, "delay"),
        ({"job_type": "x", "run_at": "tomorrow"}, "run_at"),
    ],
)
async def test_create_invalid_body_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    body_out = assert_error(await client.post("/api/jobs", json=body), 422, field)
    assert body_out["error"] == "validation_error"


async def test_create_accepts_100_character_job_type(client: httpx.AsyncClient) -> None:
    job = await create(client, "x" * 100)
    assert job["job_type"] == "x" * 100


async def test_create_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    body = {"job_type": "big", "request_data": {"blob": "x" * (1024 * 1024 + 10)}}
    assert_error(await client.post("/api/jobs", json=body), 413)
    assert (await client.get("/api/jobs")).json()["total"] == 0


async def test_create_accepts_a_charset_in_the_content_type(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/jobs", content=b'{"job_type": "x"}', headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 201


async def test_create_non_object_body_is_422(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/jobs", json=[{"job_type": "x"}]), 422)


# -- idempotency -----------------------------------------------------------------------------


async def test_idempotency_key_returns_the_same_job(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-17"}
    body = {"job_type": "invoice", "request_data": {"order": 17}}
    first = await client.post("/api/jobs", json=body, headers=headers)
    assert first.status_code == 201
    again = await client.post("/api/jobs", json=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    listed = await client.get("/api/jobs", params={"job_type": "invoice"})
    assert listed.json()["total"] == 1


async def test_idempotency_key_with_a_different_body_is_422(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-18"}
    first = await client.post("/api/jobs", json={"job_type": "invoice", "request_data": {"n": 1}}, headers=headers)
    assert first.status_code == 201
    other = await client.post("/api/jobs", json={"job_type": "invoice", "request_data": {"n": 2}}, headers=headers)
    body = assert_error(other, 422)
    assert "order-18" in body["detail"]


async def test_different_idempotency_keys_make_different_jobs(client: httpx.AsyncClient) -> None:
    body = {"job_type": "invoice"}
    a = await client.post("/api/jobs", json=body, headers={"Idempotency-Key": "a"})
    b = await client.post("/api/jobs", json=body, headers={"Idempotency-Key": "b"})
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


# -- GET /api/jobs/{id} --------------------------------------------------------------------------


async def test_get_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get("/api/jobs/does-not-exist"), 404)
    assert "does-not-exist" in body["detail"]


# -- PUT /api/jobs/{id} ----------------------------------------------------------------------------


async def test_put_changes_only_the_given_fields(client: httpx.AsyncClient) -> None:
    job = await create(client, request_data={"a": 1})
    response = await put(client, job["id"], message="halfway", progress=40)
    assert response.status_code == 200
    updated = response.json()
    assert updated["message"] == "halfway"
    assert updated["progress"] == 40
    assert updated["status"] == "queued"
    assert updated["request_data"] == {"a": 1}
    again = (await put(client, job["id"], error="warning only")).json()
    assert again["message"] == "halfway"
    assert again["progress"] == 40
    assert again["error"] == "warning only"


async def test_put_sets_worker_id_and_result_data(client: httpx.AsyncClient) -> None:
    job = await create(client)
    updated = (await put(client, job["id"], worker_id="w-1", result_data={"rows": [1, 2]})).json()
    assert updated["worker_id"] == "w-1"
    assert updated["result_data"] == {"rows": [1, 2]}


async def test_put_null_message_clears_it(client: httpx.AsyncClient) -> None:
    job = await create(client)
    assert (await put(client, job["id"], message="note")).json()["message"] == "note"
    cleared = await put(client, job["id"], message=None)
    assert cleared.status_code == 200
    assert cleared.json()["message"] is None
    assert (await client.get(f"/api/jobs/{job['id']}")).json()["message"] is None


async def test_timestamps_follow_the_status(client: httpx.AsyncClient) -> None:
    job = await create(client)
    created_at = parse_ts(job["created_at"])

    active = (await put(client, job["id"], status="processing")).json()
    started = parse_ts(active["started_at"])
    assert started >= created_at
    assert active["completed_at"] is None
    assert parse_ts(active["updated_at"]) >= started

    # A later active status keeps the first start.
    rendering = (await put(client, job["id"], status="rendering", progress=50)).json()
    assert rendering["status"] == "rendering"
    assert parse_ts(rendering["started_at"]) == started
    assert parse_ts(rendering["updated_at"]) > parse_ts(active["updated_at"])

    # Any change, even of the message alone, moves updated_at.
    noted = (await put(client, job["id"], message="still going")).json()
    assert parse_ts(noted["updated_at"]) > parse_ts(rendering["updated_at"])
    assert noted["completed_at"] is None

    done = (await put(client, job["id"], status="completed", result_data={"ok": True})).json()
    assert done["status"] == "completed"
    assert done["progress"] == 100
    assert parse_ts(done["started_at"]) == started
    completed_at = parse_ts(done["completed_at"])
    assert completed_at >= parse_ts(noted["updated_at"])
    assert parse_ts(done["updated_at"]) == completed_at


async def test_started_at_is_not_reset_by_requeue(client: httpx.AsyncClient) -> None:
    job = await create(client)
    first = (await put(client, job["id"], status="processing")).json()
    await put(client, job["id"], status="queued")
    again = (await put(client, job["id"], status="analyzing")).json()
    assert again["started_at"] == first["started_at"]


async def test_failing_sets_completed_at_but_keeps_progress(client: httpx.AsyncClient) -> None:
    job = await create(client)
    await put(client, job["id"], status="processing", progress=30)
    failed = (await put(client, job["id"], status="failed", error="boom")).json()
    assert failed["status"] == "failed"
    assert failed["error"] == "boom"
    assert failed["progress"] == 30
    assert failed["completed_at"] is not None


async def test_completing_a_waiting_job_sets_progress_100(client: httpx.AsyncClient) -> None:
    job = await create(client)
    done = (await put(client, job["id"], status="completed", progress=20)).json()
    assert done["progress"] == 100
    assert done["completed_at"] is not None


@pytest.mark.parametrize("status", ["completed", "failed"])
@pytest.mark.parametrize(
    "change",
    [
        {"status": "queued"},
        {"status": "pending"},
        {"status": "processing"},
        {"status": "rendering"},
        {"status": "completed"},
        {"progress": 10},
        {"message": "late"},
        {"result_data": {"x": 1}},
        {"worker_id": "w"},
    ],
)
async def test_put_on_a_terminal_job_is_409(
    client: httpx.AsyncClient, status: str, change: dict[str, Any]
) -> None:
    job = await finished(client, status)
    assert_error(await put(client, job["id"], **change), 409)
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == job


async def test_put_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await put(client, "nope", message="x"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"progress": 101}, "progress"),
        ({"progress": -1}, "progress"),
        ({"progress": "ten"}, "progress"),
        ({"progress": None}, "progress"),
        ({"status": "sleeping"}, "status"),
        ({"status": None}, "status"),
        ({"worker_id": ""}, "worker_id"),
        ({"message": 12}, "message"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_put_invalid_value_is_422(client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    job = await create(client)
    assert_error(await put(client, job["id"], **body), 422, field)
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == job


async def test_put_wrong_content_type_and_malformed_json(client: httpx.AsyncClient) -> None:
    job = await create(client)
    assert_error(await client.put(f"/api/jobs/{job['id']}", content=b"{}", headers={"content-type": "text/csv"}), 415)
    assert_error(
        await client.put(f"/api/jobs/{job['id']}", content=b"{,}", headers={"content-type": "application/json"}), 400
    )


# -- POST /api/jobs/{id}/progress ------------------------------------------------------------------


async def test_progress_updates_the_job(client: httpx.AsyncClient) -> None:
    job = await create(client)
    response = await client.post(f"/api/jobs/{job['id']}/progress", json={"progress": 35, "message": "a third"})
    assert response.status_code == 200
    body = response.json()
    assert body["progress"] == 35
    assert body["message"] == "a third"
    assert parse_ts(body["updated_at"]) > parse_ts(job["updated_at"])
    # Without a message the previous one stays.
    again = (await client.post(f"/api/jobs/{job['id']}/progress", json={"progress": 36})).json()
    assert again["progress"] == 36
    assert again["message"] == "a third"


async def test_progress_may_carry_a_running_status(client: httpx.AsyncClient) -> None:
    job = await create(client)
    response = await client.post(f"/api/jobs/{job['id']}/progress", json={"progress": 10, "status": "rendering"})
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["progress"]) == ("rendering", 10)
    assert body["started_at"] is not None


@pytest.mark.parametrize("status", ["completed", "failed", "queued", "pending", "bogus"])
async def test_progress_refuses_a_non_running_status(client: httpx.AsyncClient, status: str) -> None:
    job = await create(client)
    response = await client.post(f"/api/jobs/{job['id']}/progress", json={"progress": 10, "status": status})
    assert_error(response, 422, "status")
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == job


async def test_progress_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/jobs/nope/progress", json={"progress": 5}), 404)


@pytest.mark.parametrize("status", ["completed", "failed"])
async def test_progress_on_a_terminal_job_is_409(client: httpx.AsyncClient, status: str) -> None:
    job = await finished(client, status)
    assert_error(await client.post(f"/api/jobs/{job['id']}/progress", json={"progress": 5}), 409)


@pytest.mark.parametrize("progress", [-1, 101, 1000, "50", None, 2.5])
async def test_progress_out_of_range_is_422(client: httpx.AsyncClient, progress: Any) -> None:
    job = await create(client)
    response = await client.post(f"/api/jobs/{job['id']}/progress", json={"progress": progress})
    assert_error(response, 422, "progress")


async def test_progress_boundaries_are_accepted(client: httpx.AsyncClient) -> None:
    job = await create(client)
    for value in (0, 100):
        response = await client.post(f"/api/jobs/{job['id']}/progress", json={"progress": value})
        assert response.status_code == 200
        assert response.json()["progress"] == value


async def test_progress_missing_field_is_422(client: httpx.AsyncClient) -> None:
    job = await create(client)
    assert_error(await client.post(f"/api/jobs/{job['id']}/progress", json={"message": "x"}), 422, "progress")


# -- GET /api/jobs ---------------------------------------------------------------------------------


async def test_list_is_newest_first_with_total_limit_and_offset(client: httpx.AsyncClient) -> None:
    ids = [(await create(client, f"t{i}"))["id"] for i in range(7)]
    newest_first = list(reversed(ids))
    page = (await client.get("/api/jobs")).json()
    assert page["total"] == 7
    assert page["limit"] == 50
    assert page["offset"] == 0
    assert [j["id"] for j in page["items"]] == newest_first
    assert JOB_FIELDS <= set(page["items"][0])

    seen: list[str] = []
    for offset in range(0, 7, 3):
        part = (await client.get("/api/jobs/", params={"limit": 3, "offset": offset})).json()
        assert part["total"] == 7
        assert part["limit"] == 3
        assert part["offset"] == offset
        seen += [j["id"] for j in part["items"]]
    assert seen == newest_first

    beyond = (await client.get("/api/jobs", params={"offset": 50})).json()
    assert beyond["items"] == []
    assert beyond["total"] == 7


async def test_list_empty(client: httpx.AsyncClient) -> None:
    page = (await client.get("/api/jobs")).json()
    assert page == {"items": [], "total": 0, "limit": 50, "offset": 0}


async def test_list_filters(client: httpx.AsyncClient) -> None:
    queued_a = await create(client, "a")
    processing_a = await create(client, "a")
    await put(client, processing_a["id"], status="processing", worker_id="w-1")
    done_b = await create(client, "b")
    await put(client, done_b["id"], worker_id="w-2")
    await put(client, done_b["id"], status="completed")
    failed_b = await create(client, "b")
    await put(client, failed_b["id"], status="failed", worker_id="w-1")

    async def ids(**params: Any) -> set[str]:
        response = await client.get("/api/jobs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == len(page["items"])
        return {j["id"] for j in page["items"]}

    assert await ids(status="queued") == {queued_a["id"]}
    assert await ids(status=["completed", "failed"]) == {done_b["id"], failed_b["id"]}
    assert await ids(status="completed,processing") == {done_b["id"], processing_a["id"]}
    assert await ids(status=["queued,failed", "processing"]) == {queued_a["id"], failed_b["id"], processing_a["id"]}
    assert await ids(job_type="a") == {queued_a["id"], processing_a["id"]}
    assert await ids(job_type="missing") == set()
    assert await ids(worker_id="w-1") == {processing_a["id"], failed_b["id"]}
    assert await ids(worker_id="w-1", job_type="b") == {failed_b["id"]}
    assert await ids(worker_id="w-2", status="completed") == {done_b["id"]}
    assert await ids(status="pending") == set()


async def test_list_total_counts_beyond_the_page(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        await create(client, "many")
    await create(client, "other")
    page = (await client.get("/api/jobs", params={"job_type": "many", "limit": 2})).json()
    assert len(page["items"]) == 2
    assert page["total"] == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"status": "queued,nope"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": -5}, "limit"),
        ({"limit": MAX_PAGE_SIZE + 1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "x"}, "offset"),
    ],
)
async def test_list_invalid_filters_are_422(client: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    assert_error(await client.get("/api/jobs", params=params), 422, field)


async def test_list_accepts_the_maximum_page(client: httpx.AsyncClient) -> None:
    await create(client)
    page = (await client.get("/api/jobs", params={"limit": MAX_PAGE_SIZE})).json()
    assert page["limit"] == MAX_PAGE_SIZE
    assert len(page["items"]) == 1


# -- DELETE /api/jobs/{id} ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "failed"])
async def test_delete_terminal_job_is_204(client: httpx.AsyncClient, status: str) -> None:
    job = await finished(client, status)
    response = await client.delete(f"/api/jobs/{job['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await client.get(f"/api/jobs/{job['id']}"), 404)
    assert_error(await client.delete(f"/api/jobs/{job['id']}"), 404)


@pytest.mark.parametrize("status", ["queued", "pending", "processing", "generating_audio"])
async def test_delete_unfinished_job_is_409(client: httpx.AsyncClient, status: str) -> None:
    job = await create(client)
    if status != "queued":
        assert (await put(client, job["id"], status=status)).status_code == 200
    assert_error(await client.delete(f"/api/jobs/{job['id']}"), 409)
    assert (await client.get(f"/api/jobs/{job['id']}")).status_code == 200


async def test_delete_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/api/jobs/nope"), 404)


# -- stats -------------------------------------------------------------------------------------------


async def test_stats_count_every_status(client: httpx.AsyncClient) -> None:
    empty = (await client.get("/api/jobs/stats")).json()
    assert empty["total"] == 0
    assert set(empty["by_status"]) >= {s.value for s in JobStatus}
    assert set(empty["by_status"].values()) == {0}

    for _ in range(3):
        await create(client, "a")
    running = await create(client, "a")
    await put(client, running["id"], status="rendering")
    ran = await create(client, "b")
    await put(client, ran["id"], status="processing")
    await put(client, ran["id"], status="completed")
    await finished(client, "failed", job_type="b")
    pending = await create(client, "b")
    await put(client, pending["id"], status="pending")

    stats = (await client.get("/api/jobs/stats")).json()
    assert stats["total"] == 7
    expected = {s.value: 0 for s in JobStatus} | {
        "queued": 3,
        "rendering": 1,
        "completed": 1,
        "failed": 1,
        "pending": 1,
    }
    assert stats["by_status"] == expected
    assert stats["ready"] == 4
    assert stats["scheduled"] == 0
    assert stats["oldest_waiting_at"] is not None
    # Only the job that went through processing has a start; the others never ran.
    assert stats["avg_run_seconds"] is not None and stats["avg_run_seconds"] >= 0
    assert stats["avg_wait_seconds"] is not None and stats["avg_wait_seconds"] >= 0

    of_b = (await client.get("/api/jobs/stats/b")).json()
    assert of_b["job_type"] == "b"
    assert of_b["total"] == 3
    assert of_b["by_status"] == {s.value: 0 for s in JobStatus} | {"completed": 1, "failed": 1, "pending": 1}

    of_unknown = (await client.get("/api/jobs/stats/never-seen")).json()
    assert of_unknown["total"] == 0
    assert set(of_unknown["by_status"]) >= {s.value for s in JobStatus}


async def test_stats_count_delayed_jobs_as_scheduled(client: httpx.AsyncClient) -> None:
    await create(client, "later", delay=3600)
    await create(client, "later")
    stats = (await client.get("/api/jobs/stats/later")).json()
    assert stats["ready"] == 1
    assert stats["scheduled"] == 1


# -- service endpoints ----------------------------------------------------------------------------


async def test_index_names_the_service(client: httpx.AsyncClient) -> None:
    import jobqueue

    response = await client.get("/")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "jobqueue"
    assert body["version"] == jobqueue.__version__
    links = body["links"]
    # The all-jobs event stream never ends: httpx's ASGI transport would wait for its end
    # forever. Streams are exercised through a real uvicorn in test_sse.py.
    assert links.pop("events") == "/api/events"
    for link in links.values():
        assert (await client.get(link)).status_code in (200, 405), link


async def test_health_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"


def _replace_with_garbage(database_url: str) -> None:
    drop_database(database_url)
    database_path(database_url).write_bytes(b"this is not a database " * 500)


async def assert_health_unavailable(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"].startswith("error")


async def test_health_is_503_when_the_database_is_gone(client: httpx.AsyncClient, settings: Settings) -> None:
    assert (await client.get("/health")).status_code == 200
    # In a thread: a blocking call on the loop would starve the app's own writer.
    await asyncio.to_thread(drop_database, settings.database_url)
    await assert_health_unavailable(client)


@sqlite_only
async def test_health_is_503_when_the_database_file_is_garbage(client: httpx.AsyncClient, settings: Settings) -> None:
    assert (await client.get("/health")).status_code == 200
    await asyncio.to_thread(_replace_with_garbage, settings.database_url)
    await assert_health_unavailable(client)


async def test_health_is_503_when_the_bookkeeping_is_gone(client: httpx.AsyncClient, settings: Settings) -> None:
    assert (await client.get("/health")).status_code == 200
    await asyncio.to_thread(drop_table, settings.database_url, "schema_migrations")
    await assert_health_unavailable(client)


# -- generic errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/api/nope", "/api/jobs/a/b/c"])
async def test_unknown_path_is_404_json(client: httpx.AsyncClient, path: str) -> None:
    body = assert_error(await client.get(path), 404)
    assert path in body["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("PATCH", "/api/jobs/x"), ("PATCH", "/api/jobs"), ("PUT", "/api/jobs/"), ("POST", "/health"), ("GET", "/api/generate")],
)
async def test_wrong_method_is_405_json(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert_error(response, 405)
    assert response.headers.get("allow")


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/jobs", "DELETE, GET, HEAD, POST"),
        ("/api/jobs/", "DELETE, GET, HEAD, POST"),
        ("/api/jobs/some-id", "DELETE, GET, HEAD, PUT"),
        ("/api/jobs/some-id/cancel", "POST"),
        ("/health", "GET, HEAD"),
        ("/api/jobs/stats", "GET, HEAD"),  # its own resource, not the job "stats"
    ],
)
async def test_405_allow_lists_every_method_of_the_path(client: httpx.AsyncClient, path: str, allowed: str) -> None:
    """Several routes can share a path (GET and POST /api/jobs); Allow names all of their methods."""
    response = await client.request("PATCH", path)
    assert_error(response, 405)
    assert response.headers["allow"] == allowed


@pytest.mark.parametrize("debug", [False, True])
async def test_internal_error_shows_a_trace_only_in_debug(database_url: str, debug: bool) -> None:
    """An operator dropped the jobs table under the running service: an honest unexpected error."""
    settings = make_settings(database_url, debug=debug)
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        # Starlette re-raises after answering (so servers log it); the client must not.
        transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            job = await create(client)
            await asyncio.to_thread(drop_table, database_url, "jobs")
            response = await client.get(f"/api/jobs/{job['id']}")
    assert response.status_code == 500
    if debug:
        assert "Traceback" in response.text
    else:
        body = assert_error(response, 500)
        assert body["error"] == "internal_error"
        # Neither SQLite's nor PostgreSQL's own words reach the client.
        assert "no such table" not in response.text and "does not exist" not in response.text
        assert "Traceback" not in response.text
        assert ".py" not in response.text


# -- generation -------------------------------------------------------------------------------------


async def test_generate_with_the_default_model(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/generate", json={"prompt": "rain on a tin roof", "duration": 2})
    assert response.status_code == 201
    job = response.json()
    assert JOB_FIELDS <= set(job)
    assert job["job_type"] == "generation"
    assert job["status"] == "queued"
    assert job["request_data"]["prompt"] == "rain on a tin roof"
    assert job["request_data"]["duration"] == 2
    assert job["request_data"]["model"] in MODELS


@pytest.mark.parametrize("model", sorted(MODELS))
async def test_generate_with_a_named_model(client: httpx.AsyncClient, model: str) -> None:
    response = await client.post(f"/api/generate/{model}", json={"prompt": "birds", "priority": 3})
    assert response.status_code == 201
    assert response.json()["request_data"]["model"] == model
    assert response.json()["priority"] == 3


async def test_generate_unknown_model_is_422_listing_the_known_ones(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.post("/api/generate/no-such-model", json={"prompt": "x"}), 422, "model")
    for model in MODELS:
        assert model in body["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "prompt"), ({"prompt": ""}, "prompt"), ({"prompt": "x", "duration": 0}, "duration"), ({"prompt": "x", "style": "jazz"}, "style")],
)
async def test_generate_invalid_body_is_422(client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    assert_error(await client.post("/api/generate", json=body), 422, field)


async def test_generate_is_idempotent_by_header(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "song-1"}
    first = await client.post("/api/generate", json={"prompt": "waves"}, headers=headers)
    again = await client.post("/api/generate", json={"prompt": "waves"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = await client.post("/api/generate", json={"prompt": "wind"}, headers=headers)
    assert_error(other, 422)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"model": "musicgen-small", "prompt": "rain", "duration": 1_000_000}, "request_data.duration"),
        ({"model": "musicgen-small", "prompt": "rain", "duration": 0}, "request_data.duration"),
        ({"model": "gpt-9", "prompt": "rain"}, "request_data.model"),
        ({"model": "audiogen", "prompt": ""}, "request_data.prompt"),
        ({"model": "audiogen"}, "request_data.prompt"),
        ({"model": "audiogen", "prompt": "rain", "durration": 5}, "request_data.durration"),
        (None, "request_data"),
    ],
)
async def test_generation_limits_hold_through_post_api_jobs(
    client: httpx.AsyncClient, data: dict[str, Any] | None, field: str
) -> None:
    """A worker slot is taken for duration x 0.05 s: a million seconds must not get in by another route."""
    response = await client.post("/api/jobs", json={"job_type": "generation", "request_data": data})
    assert_error(response, 422, field)
    assert (await client.get("/api/jobs")).json()["total"] == 0


async def test_generation_through_post_api_jobs_within_the_limits(client: httpx.AsyncClient) -> None:
    data = {"model": "audiogen", "prompt": "rain", "duration": 300}
    assert (await create(client, "generation", request_data=data))["request_data"] == data


# -- concurrency through the API ------------------------------------------------------------------


async def test_concurrent_creates_all_land(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(*(client.post("/api/jobs", json={"job_type": "burst"}) for _ in range(50)))
    assert {r.status_code for r in responses} == {201}
    assert (await client.get("/api/jobs/stats/burst")).json()["total"] == 50


# -- JSON numbers ----------------------------------------------------------------------------------


async def test_an_integral_float_is_an_integer(client: httpx.AsyncClient) -> None:
    """JSON has one number type: 7.0 is the integer 7 to JSON Schema and to OpenAPI clients."""
    job = (await client.post("/api/jobs", json={"job_type": "x", "priority": 7.0, "max_attempts": 2.0})).json()
    assert (job["priority"], job["max_attempts"]) == (7, 2)
    assert (await client.post(f"/api/jobs/{job['id']}/progress", json={"progress": 50.0})).json()["progress"] == 50
    claim = await client.post("/api/workers/claim", json={"worker_id": "w", "limit": 1.0})
    assert claim.status_code == 200, claim.text
    assert_error(await client.post("/api/jobs", json={"job_type": "x", "priority": 7.5}), 422, "priority")
    assert_error(await client.post("/api/jobs", json={"job_type": "x", "priority": "7"}), 422, "priority")


async def test_free_form_data_keeps_its_floats(client: httpx.AsyncClient) -> None:
    job = (await client.post("/api/jobs", json={"job_type": "x", "priority": 1.0, "request_data": {"f": 2.0}})).json()
    assert job["request_data"] == {"f": 2.0} and isinstance(job["request_data"]["f"], float)
