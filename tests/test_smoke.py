from __future__ import annotations

import httpx


async def test_create_and_get(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/jobs/", json={"job_type": "thumbnail", "request_data": {"w": 64}})
    assert created.status_code == 201
    job = created.json()
    fetched = await client.get(f"/api/jobs/{job['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["request_data"] == {"w": 64}
    assert fetched.json()["status"] == "queued"
