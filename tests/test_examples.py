"""The examples keep working: imported into the test process, and run as scripts."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from .conftest import ROOT, free_port, make_settings, stop_process, subprocess_env, wait_for_http

EXAMPLE = ROOT / "examples" / "background_tasks.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("background_tasks_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def example_client(tmp_path: Path, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    example = load_example()
    # The worker pool runs inside the app, as when the example is started as a script.
    settings = make_settings(database_url, run_worker=True, poll_interval=0.05)
    app = example.build_app(settings, tmp_path / "audit.log")
    async with app.router.lifespan_context(app) as state:

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def wait_for_status(client: httpx.AsyncClient, url: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = (await client.get(url)).json()
        if job["status"] == status:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job never became {status}: {job}")


async def test_route_queues_a_job_and_the_background_task_writes_the_audit_line(
    example_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    response = await example_client.post("/reports", json={"customer": "acme"})
    assert response.status_code == 202
    body = response.json()
    job_id = body["job_id"]
    # httpx's ASGI transport returns once the app is done, background task included.
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert len(lines) == 1
    assert f"report {job_id} queued for acme" in lines[0]

    done = await wait_for_status(example_client, body["status_url"], "completed")
    assert done["job_type"] == "report"
    assert done["result_data"] == {"customer": "acme", "pages": 4}
    assert done["progress"] == 100


async def test_the_jobqueue_api_is_mounted_beside_the_route(example_client: httpx.AsyncClient) -> None:
    await example_client.post("/reports", json={"customer": "globex"})
    listed = (await example_client.get("/api/jobs", params={"job_type": "report"})).json()
    assert listed["total"] == 1
    assert (await example_client.get("/health")).status_code == 200
    missing = await example_client.get("/no/such/path")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


async def test_invalid_request_queues_nothing_and_audits_nothing(
    example_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    response = await example_client.post("/reports", json={"client": "acme"})
    assert response.status_code == 422
    malformed = await example_client.post("/reports", content=b"{", headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert (await example_client.get("/api/jobs")).json()["total"] == 0
    assert not (tmp_path / "audit.log").exists()


def test_example_runs_as_a_script(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    audit = tmp_path / "audit.log"
    env = subprocess_env(
        DATABASE_URL=database_url,
        HOST="127.0.0.1",
        PORT=str(port),
        AUDIT_LOG=str(audit),
        POLL_INTERVAL="0.05",
    )
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/health", proc=proc)
        with httpx.Client(base_url=base, timeout=10) as http:
            response = http.post("/reports", json={"customer": "initech"})
            assert response.status_code == 202
            job_id = response.json()["job_id"]
            deadline = time.monotonic() + 30
            job: dict[str, Any] = {}
            while time.monotonic() < deadline:
                job = http.get(f"/api/jobs/{job_id}").json()
                if job["status"] == "completed" and audit.exists():
                    break
                time.sleep(0.05)
        assert job["status"] == "completed", job
        assert f"report {job_id} queued for initech by 127.0.0.1" in audit.read_text()
    finally:
        stop_process(proc)
        log.close()
