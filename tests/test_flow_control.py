"""Flow control per job type (pause, max_running, max_running_per_key, rate limit), on every
backend: enforced by the claim itself, so it holds across processes; proven with real worker
processes sampled from the database while they run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobqueue.models import JobStatus, KeyScope, TypeControlsUpdate
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings
from tests.conftest import assert_error, subprocess_env
from tests.helpers import run_sql, wait_until
from tests.test_auth import app_client, bearer, new_key  # noqa: F401 (app_client is a fixture)
from tests.test_dashboard import dashboard, driver  # noqa: F401 (fixtures)


async def claim_ids(service: JobQueueService, job_types: list[str] | None, limit: int = 10) -> list[str]:
    return [c.job.id for c in await service.claim_jobs(worker_id="w", job_types=job_types, limit=limit)]


# -- pause ------------------------------------------------------------------------------------------


async def test_a_paused_type_is_not_claimed_until_resumed_also_after_a_restart(
    service: JobQueueService, settings: Settings
) -> None:
    running = await service.enqueue_job("report")
    assert await claim_ids(service, ["report"], 1) == [running]
    waiting = await service.enqueue_job("report")
    other = await service.enqueue_job("mail")

    paused = await service.pause("report")
    assert paused.paused and paused.running == 1
    # Neither a claim of the type, nor of several types, nor of any type takes it.
    assert await claim_ids(service, ["report"]) == []
    assert await claim_ids(service, ["report", "mail"]) == [other]
    assert await claim_ids(service, None) == []
    async with JobQueueService.open(settings) as reopened:  # another process, or a restart
        assert (await reopened.type_controls("report")).paused
        assert await claim_ids(reopened, None) == []
        await reopened.resume("report")
    assert not (await service.type_controls("report")).paused
    assert await claim_ids(service, None) == [waiting]


async def test_running_jobs_of_a_paused_type_finish(service: JobQueueService) -> None:
    await service.enqueue_job("report")
    [claimed] = await service.claim_jobs(worker_id="w", job_types=["report"])
    await service.pause("report")
    done = await service.complete_job(claimed.job.id, claimed.claim_token, {"ok": True})
    assert done.status is JobStatus.COMPLETED


async def test_clearing_every_control_removes_the_row(service: JobQueueService, database_url: str) -> None:
    await service.set_limits("report", max_running=2, rate=(5, 1.0))
    await service.pause("report")
    await service.resume("report")
    await service.set_limits("report", max_running=None, rate=None)
    assert run_sql(database_url, "SELECT * FROM job_type_controls") == []
    assert (await service.type_controls("report")).max_running is None


# -- max_running across processes --------------------------------------------------------------------

#: How long each job of the process test runs; long enough for several samples per job.
JOB_SECONDS = 0.15


@pytest.fixture
def worker_processes(tmp_path: Path, settings: Settings) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    env = subprocess_env(DATABASE_URL=settings.database_url, LEASE_SECONDS="5", POLL_INTERVAL="0.05")
    for n in range(4):
        with open(tmp_path / f"worker-{n}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable, "-m", "jobqueue", "worker",
                        "--registry", "tests.handlers:registry", "--job-types", "ledger",
                        "--concurrency", "20",
                    ],  # fmt: skip
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


HELD = "SELECT count(*) AS held FROM jobs WHERE job_type = 'ledger' AND lease_expires_at IS NOT NULL"
WAITING = "SELECT count(*) AS waiting FROM jobs WHERE job_type = 'ledger' AND status <> 'completed'"


@pytest.mark.slow
async def test_max_running_holds_across_four_worker_processes(
    service: JobQueueService, database_url: str, tmp_path: Path, worker_processes: list[subprocess.Popen[bytes]]
) -> None:
    """4 worker processes of concurrency 20 (80 slots), a type limited to 3 running: sampled
    from the database while the 60 jobs run, never more than 3 held, and every job completes.

    All four are claiming (each polls every 50 ms with free slots) while the jobs run; which of
    them wins a freed slot is theirs to race for (often the one whose job just ended)."""
    logs = [tmp_path / f"worker-{n}.log" for n in range(len(worker_processes))]
    await wait_until(
        lambda: all(log.exists() and "concurrency 20" in log.read_text() for log in logs), "4 workers to start"
    )
    await service.set_limits("ledger", max_running=3)
    ledger = tmp_path / "ledger.txt"
    ids = [await service.enqueue_job("ledger", {"ledger": str(ledger), "seconds": JOB_SECONDS}) for _ in range(60)]
    samples: list[int] = []
    deadline = time.monotonic() + 120
    while run_sql(database_url, WAITING)[0]["waiting"]:
        samples.append(run_sql(database_url, HELD)[0]["held"])
        assert time.monotonic() < deadline, f"jobs still waiting after 120s; held samples {samples[-20:]}"
        await asyncio.sleep(0.01)
    assert max(samples) <= 3, samples
    assert max(samples) == 3, "the limit was never reached: the test proved nothing"
    jobs = [await service.require_job(i) for i in ids]
    assert all(job.status is JobStatus.COMPLETED for job in jobs)
    assert all(proc.poll() is None for proc in worker_processes)


HELD_BY_KEY = (
    "SELECT concurrency_key AS key, count(*) AS held FROM jobs"
    " WHERE job_type = 'ledger' AND lease_expires_at IS NOT NULL GROUP BY concurrency_key"
)


@pytest.mark.slow
async def test_per_key_limit_holds_across_four_worker_processes(
    service: JobQueueService, database_url: str, tmp_path: Path, worker_processes: list[subprocess.Popen[bytes]]
) -> None:
    """The same 4 processes (80 slots), one running job per tenant: sampled while 3 tenants' 24
    jobs run, never 2 of one tenant at once, yet the tenants run side by side."""
    logs = [tmp_path / f"worker-{n}.log" for n in range(len(worker_processes))]
    await wait_until(
        lambda: all(log.exists() and "concurrency 20" in log.read_text() for log in logs), "4 workers to start"
    )
    await service.set_limits("ledger", max_running_per_key=1)
    ledger = tmp_path / "ledger.txt"
    ids = [
        await service.enqueue_job("ledger", {"ledger": str(ledger), "seconds": JOB_SECONDS}, concurrency_key=tenant)
        for tenant in ("a", "b", "c")
        for _ in range(8)  # tenant a's backlog is queued first, ahead of b's and c's
    ]
    most_per_key = 0
    most_keys_at_once = 0
    deadline = time.monotonic() + 120
    while run_sql(database_url, WAITING)[0]["waiting"]:
        held = {row["key"]: row["held"] for row in run_sql(database_url, HELD_BY_KEY)}
        most_per_key = max(most_per_key, *held.values(), 0)
        most_keys_at_once = max(most_keys_at_once, len(held))
        assert time.monotonic() < deadline, "jobs still waiting after 120s"
        await asyncio.sleep(0.01)
    assert most_per_key == 1
    assert most_keys_at_once >= 2, "the tenants never ran side by side: a backlog held the others back"
    assert all([(await service.require_job(i)).status is JobStatus.COMPLETED for i in ids])


@pytest.mark.slow
async def test_rate_limit_holds_across_four_worker_processes(
    service: JobQueueService, tmp_path: Path, worker_processes: list[subprocess.Popen[bytes]]
) -> None:
    """4 processes claiming a type limited to 4 starts a second: 14 jobs start over more than
    2.5 s, and no window of a second holds more than 4 starts, whichever process made them."""
    logs = [tmp_path / f"worker-{n}.log" for n in range(len(worker_processes))]
    await wait_until(
        lambda: all(log.exists() and "concurrency 20" in log.read_text() for log in logs), "4 workers to start"
    )
    await service.set_limits("ledger", rate=(4, 1.0))
    ledger = tmp_path / "ledger.txt"
    ids = [await service.enqueue_job("ledger", {"ledger": str(ledger)}) for _ in range(14)]

    async def all_done() -> bool:
        return all([(await service.require_job(i)).status is JobStatus.COMPLETED for i in ids])

    await wait_until(all_done, "the 14 jobs to complete", timeout=60)
    jobs = [await service.require_job(i) for i in ids]
    starts = sorted(job.started_at.timestamp() for job in jobs if job.started_at is not None)
    assert len(starts) == 14 and all(job.attempts == 1 for job in jobs)
    for earlier, later in zip(starts, starts[4:]):
        assert later - earlier >= 1.0 - 1e-5, starts
    assert starts[-1] - starts[0] > 2.5
    # Which process wins each freed start is theirs to race for: all four poll every 50 ms with
    # free slots, and one of them may win every time (the window frees at the same phase).


async def test_max_running_zero_stops_new_starts(service: JobQueueService) -> None:
    job_id = await service.enqueue_job("gpu")
    await service.set_limits("gpu", max_running=0)
    assert await claim_ids(service, ["gpu"]) == []
    await service.set_limits("gpu", max_running=1)
    assert await claim_ids(service, ["gpu", "other"]) == [job_id]
    assert await claim_ids(service, None) == []
    await service.enqueue_job("other")
    assert len(await claim_ids(service, None)) == 1  # other types pass a limited one


# -- per key ----------------------------------------------------------------------------------------


async def test_one_keys_backlog_does_not_hold_back_another_key(service: JobQueueService) -> None:
    await service.set_limits("render", max_running_per_key=1)
    big = [await service.enqueue_job("render", {"n": n}, concurrency_key="tenant-a") for n in range(30)]
    small = await service.enqueue_job("render", concurrency_key="tenant-b")
    loose = await service.enqueue_job("render")  # no key: only max_running would count it

    first = await service.claim_jobs(worker_id="w", job_types=["render"], limit=10)
    assert [c.job.id for c in first] == [big[0], small, loose]
    assert await claim_ids(service, ["render"]) == []  # both keys at their limit
    assert await claim_ids(service, None) == []
    await service.complete_job(first[0].job.id, first[0].claim_token)
    assert await claim_ids(service, None) == [big[1]]  # a's slot freed: a's next job
    job = await service.require_job(small)
    assert job.concurrency_key == "tenant-b"


async def test_per_key_and_global_limits_together(service: JobQueueService) -> None:
    await service.set_limits("render", max_running=2, max_running_per_key=1)
    for key in ("a", "a", "b", "c", "d"):
        await service.enqueue_job("render", concurrency_key=key)
    claimed = await service.claim_jobs(worker_id="w", job_types=["render"], limit=10)
    assert [c.job.concurrency_key for c in claimed] == ["a", "b"]


# -- rate limit -------------------------------------------------------------------------------------


async def test_rate_limit_never_starts_more_than_n_in_any_window(service: JobQueueService) -> None:
    await service.set_limits("api-call", rate=(5, 1.0))
    ids = [await service.enqueue_job("api-call") for _ in range(30)]
    first = await claim_ids(service, ["api-call"])
    assert len(first) == 5
    controls = await service.type_controls("api-call")
    assert controls.rate is not None and (controls.rate.limit, controls.rate.period) == (5, 1.0)
    assert controls.next_start_at is not None
    assert 0 < (controls.next_start_at - datetime.now(UTC)).total_seconds() <= 1.0

    started_by = time.monotonic() + 1.6
    while time.monotonic() < started_by:
        await claim_ids(service, ["api-call"], 3)
        await claim_ids(service, None, 2)
        await asyncio.sleep(0.01)
    jobs = [await service.require_job(i) for i in ids]
    starts = sorted(job.started_at.timestamp() for job in jobs if job.started_at is not None)
    assert 10 <= len(starts) <= 10 + 5  # the windows went on admitting, never more than 5 each
    for earlier, later in zip(starts, starts[5:]):
        assert later - earlier >= 1.0 - 1e-5, starts
    # Jobs over the limit waited without using an attempt.
    assert all(job.attempts == 0 and job.status is JobStatus.QUEUED for job in jobs if job.started_at is None)


async def test_old_starts_are_deleted_by_the_claim(service: JobQueueService, database_url: str) -> None:
    await service.set_limits("api-call", rate=(2, 0.2))
    for _ in range(6):
        await service.enqueue_job("api-call")
    claimed = 0
    deadline = time.monotonic() + 10
    while claimed < 6 and time.monotonic() < deadline:
        claimed += len(await claim_ids(service, ["api-call"]))
        await asyncio.sleep(0.05)
    assert claimed == 6
    assert run_sql(database_url, "SELECT count(*) AS n FROM job_type_starts")[0]["n"] <= 2
    await service.set_limits("api-call", rate=None)
    assert run_sql(database_url, "SELECT count(*) AS n FROM job_type_starts")[0]["n"] == 0


# -- HTTP -------------------------------------------------------------------------------------------


async def test_job_types_over_http(client: httpx.AsyncClient) -> None:
    await client.post("/api/jobs", json={"job_type": "report", "concurrency_key": "t1"})
    listing = (await client.get("/api/job-types")).json()
    assert [item["job_type"] for item in listing["items"]] == ["report"]
    assert listing["items"][0]["by_status"] == {"queued": 1}

    patched = await client.patch(
        "/api/job-types/report", json={"max_running": 4, "max_running_per_key": 1, "rate": {"limit": 10, "period": 60}}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["max_running"], body["max_running_per_key"], body["rate"]) == (4, 1, {"limit": 10, "period": 60.0})
    # Only the fields sent change; null clears.
    body = (await client.patch("/api/job-types/report", json={"rate": None})).json()
    assert (body["max_running"], body["rate"]) == (4, None)

    assert (await client.post("/api/job-types/report/pause")).json()["paused"] is True
    assert (await client.get("/api/job-types/report")).json()["paused"] is True
    assert (await client.post("/api/job-types/report/resume")).json()["paused"] is False
    # A type with no jobs and no controls answers its (empty) controls.
    fresh = (await client.get("/api/job-types/nothing-yet")).json()
    assert fresh["max_running"] is None and fresh["paused"] is False and fresh["running"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_running": -1}, "max_running"),
        ({"max_running": "3"}, "max_running"),
        ({"max_running_per_key": 0}, "max_running_per_key"),
        ({"rate": {"limit": 0, "period": 1}}, "rate.limit"),
        ({"rate": {"limit": 5, "period": 0}}, "rate.period"),
        ({"rate": {"limit": 5}}, "rate"),
        ({"rate": "5/1s"}, "rate"),
        ({"paused": "yes"}, "paused"),
        ({"max_runing": 3}, "max_runing"),
    ],
)
async def test_invalid_controls_are_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    assert_error(await client.patch("/api/job-types/report", json=body), 422, field)


async def test_concurrency_key_is_validated(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/jobs", json={"job_type": "t", "concurrency_key": ""}), 422, "concurrency_key")


async def test_changing_controls_needs_admin(service: JobQueueService, app_client: Any) -> None:  # noqa: F811
    reader = await new_key(service, "reader", KeyScope.READ)
    admin = await new_key(service, "admin", KeyScope.ADMIN)
    limited = await new_key(service, "limited", KeyScope.ADMIN, job_types=["mine"])
    async with app_client() as http:
        assert (await http.get("/api/job-types", headers=bearer(reader))).status_code == 200
        assert (await http.get("/api/job-types/report", headers=bearer(reader))).status_code == 200
        for method, path in (
            ("PATCH", "/api/job-types/report"),
            ("POST", "/api/job-types/report/pause"),
            ("POST", "/api/job-types/report/resume"),
        ):
            response = await http.request(method, path, json={"max_running": 1}, headers=bearer(reader))
            assert response.status_code == 403, (method, path, response.text)
        assert (await http.post("/api/job-types/report/pause", headers=bearer(admin))).status_code == 200
        assert (await http.post("/api/job-types/report/pause", headers=bearer(limited))).status_code == 403
        assert (await http.post("/api/job-types/mine/pause", headers=bearer(limited))).status_code == 200
        listing = (await http.get("/api/job-types", headers=bearer(limited))).json()
        assert [item["job_type"] for item in listing["items"]] == ["mine"]


async def test_python_api_validates_limits(service: JobQueueService) -> None:
    from jobqueue.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as refused:
        await service.set_limits("t", max_running=-1)
    assert refused.value.field == "max_running"
    with pytest.raises(ValidationFailed):
        await service.set_limits("t", rate=(0, 1.0))
    assert (await service.set_type_controls("t", TypeControlsUpdate(max_running=2))).max_running == 2


# -- the Python client and the CLI --------------------------------------------------------------------


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue", *args],
        env=subprocess_env(JOBQUEUE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_client_and_cli(live_server: Any) -> None:
    from jobqueue.client import JobQueueClient
    from jobqueue.sync_client import SyncJobQueueClient

    url = live_server(RUN_WORKER="false")
    async with JobQueueClient(url) as client:
        job = await client.enqueue("report", concurrency_key="tenant-1")
        assert job.concurrency_key == "tenant-1"
        limits = await client.set_limits("report", max_running=3, rate=(100, 60))
        assert limits.max_running == 3 and limits.rate is not None and limits.rate.limit == 100
        assert (await client.pause("report")).paused
        assert [t.job_type for t in await client.job_types()] == ["report"]
        assert not (await client.resume("report")).paused

    def blocking() -> None:
        with SyncJobQueueClient(url) as sync:
            assert sync.pause("report").paused
            assert sync.set_limits("report", max_running=None).max_running is None
            assert [t.job_type for t in sync.job_types()] == ["report"]
            assert not sync.resume("report").paused

    await asyncio.to_thread(blocking)

    result = cli("limit", "report", "--max-running", "none", "--max-running-per-key", "2", "--rate", "10/1m", url=url)
    assert result.returncode == 0, result.stderr
    result = cli("pause", "report", url=url)
    assert result.returncode == 0, result.stderr
    result = cli("enqueue", "report", "--concurrency-key", "tenant-2", url=url)
    assert result.returncode == 0, result.stderr
    result = cli("types", url=url)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[:3] == ["TYPE", "STATE", "RUNNING"]
    assert row.split() == ["report", "paused", "0", "2", "-", "2", "10/60s", "now"]
    result = cli("limit", "report", "--rate", "ten", url=url)
    assert result.returncode == 2 and "N/PERIOD" in result.stderr
    result = cli("resume", "report", "--json", url=url)
    assert result.returncode == 0 and '"paused": false' in result.stdout


# -- the dashboard ------------------------------------------------------------------------------------


@pytest.mark.browser
def test_dashboard_shows_controls_and_pauses_a_type(dashboard: Any) -> None:  # noqa: F811
    page = dashboard(RUN_WORKER="false")
    page.enqueue("transcode")
    page.api("PATCH", "/api/job-types/transcode", json={"max_running": 2, "rate": {"limit": 10, "period": 60}})
    page.open()

    def controls() -> list[dict[str, Any]]:
        return list(
            page.js(
                """return [...document.querySelectorAll('#job-types tbody tr')].map(tr => ({
                    type: tr.dataset.jobType, paused: tr.dataset.paused,
                    cells: [...tr.cells].map(td => td.textContent),
                    action: tr.querySelector('button[data-action]').dataset.action}))"""
            )
        )

    page.wait_for(lambda: [c["type"] for c in controls()] == ["transcode"])
    [row] = controls()
    assert row["cells"][1:7] == ["active", "0", "2", "–", "10 / 60s", "now"] and row["action"] == "pause"
    page.click("#job-types button[data-action='pause']")
    page.wait_for(lambda: controls()[0]["paused"] == "true" and controls()[0]["action"] == "resume")
    assert page.api("GET", "/api/job-types/transcode")["paused"] is True
    # A change made elsewhere (another operator, the CLI) shows up without a reload.
    page.api("POST", "/api/job-types/transcode/resume")
    page.wait_for(lambda: controls()[0]["paused"] == "false")
    assert page.console_errors() == []
