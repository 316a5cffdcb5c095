"""Several hosts on one PostgreSQL database, as a deployment that outgrew one host runs it.

Two API server processes and two worker processes share one database (processes on 127.0.0.1
stand in for hosts: nothing but the database and HTTP connects them). Clients enqueue 10,000
jobs through both APIs; one API and one worker are killed with SIGKILL mid-run and restarted.
Every acknowledged job completes, each side effect happens once outside the killed attempts,
and an SSE client on API A sees every event of a job enqueued through API B.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import free_port, subprocess_env, wait_for_http
from .handlers import read_ledger

JOBS = 10_000
#: Seconds the whole run may take before the test gives up.
DEADLINE = 240.0

pytestmark = pytest.mark.slow


@pytest.fixture
def backend() -> str:
    return "postgresql"


class Hosts:
    """The processes of the test: API servers and workers on one database; kills leftovers."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.env = {
            "DATABASE_URL": database_url,
            "LEASE_SECONDS": "2",
            "POLL_INTERVAL": "0.05",
            "RETRY_BASE_DELAY": "0.05",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        with open(self.tmp_path / f"{name}-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobqueue", *command],
                env=subprocess_env(**self.env, **env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def api(self, port: int) -> subprocess.Popen[bytes]:
        proc = self._spawn(
            "api", ["serve", "--log-level", "warning"], HOST="127.0.0.1", PORT=str(port), RUN_WORKER="false"
        )
        wait_for_http(f"http://127.0.0.1:{port}/health", proc=proc)
        return proc

    def worker(self) -> subprocess.Popen[bytes]:
        return self._spawn(
            "worker",
            [
                "worker", "--registry", "tests.handlers:registry", "--job-types", "ledger,long",
                "--concurrency", "32", "--log-level", "warning",
            ],
        )  # fmt: skip

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()


@pytest.fixture
def hosts(tmp_path: Path, database_url: str) -> Iterator[Hosts]:
    h = Hosts(tmp_path, database_url)
    yield h
    h.cleanup()


async def _enqueue(clients: list[httpx.AsyncClient], n: int, ledger: Path) -> str:
    """Create job ``n`` through API ``n % 2``; while that API is down, through the other.

    The idempotency key makes a retry after a lost answer safe: the job exists once.
    """
    body = {"job_type": "ledger", "request_data": {"ledger": str(ledger)}, "idempotency_key": f"job-{n}"}
    for attempt in range(200):
        client = clients[(n + attempt) % 2]
        try:
            response = await client.post("/api/jobs", json=body)
        except httpx.TransportError:
            await asyncio.sleep(0.05)
            continue
        assert response.status_code in (200, 201), response.text
        return str(response.json()["id"])
    raise AssertionError(f"job {n} could not be enqueued through either API")


async def _stream_kinds(base: str, job_id: str) -> list[tuple[str, int]]:
    """(event name, SSE id) of a job's stream on ``base`` until it ends."""
    seen: list[tuple[str, int]] = []
    async with httpx.AsyncClient(base_url=base, timeout=DEADLINE) as client:
        async with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
            name, event_id = "", 0
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("id: "):
                    event_id = int(line[4:])
                elif not line and name:
                    seen.append((name, event_id))
                    name = ""
    return seen


async def test_two_apis_and_two_workers_on_one_database_survive_sigkill(hosts: Hosts, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    port_a, port_b = free_port(), free_port()
    hosts.api(port_a)
    api_b = hosts.api(port_b)
    base_a, base_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    worker_1 = hosts.worker()
    hosts.worker()

    limits = httpx.Limits(max_connections=25)
    async with (
        httpx.AsyncClient(base_url=base_a, timeout=30, limits=limits) as client_a,
        httpx.AsyncClient(base_url=base_b, timeout=30, limits=limits) as client_b,
    ):
        # The watched job: enqueued through B, streamed from A, run by whichever worker.
        watched = await client_b.post(
            "/api/jobs", json={"job_type": "long", "request_data": {"ledger": str(ledger), "seconds": 2}, "delay": 1}
        )
        assert watched.status_code == 201, watched.text
        watched_id = watched.json()["id"]
        stream = asyncio.create_task(_stream_kinds(base_a, watched_id))

        clients = [client_a, client_b]
        semaphore = asyncio.Semaphore(50)

        async def enqueue(n: int) -> str:
            async with semaphore:
                return await _enqueue(clients, n, ledger)

        tasks = [asyncio.create_task(enqueue(n)) for n in range(JOBS)]

        # Mid-run: API B and worker 1 die without any chance to clean up, then come back.
        while sum(t.done() for t in tasks) < JOBS // 3:
            await asyncio.sleep(0.05)
        api_b.send_signal(signal.SIGKILL)
        while len(read_ledger(ledger)) < JOBS // 5:
            await asyncio.sleep(0.05)
        worker_1.send_signal(signal.SIGKILL)
        killed_pid = worker_1.pid
        worker_1.wait()
        api_b.wait()
        await asyncio.sleep(0.5)
        hosts.worker()
        hosts.api(port_b)

        ids = await asyncio.gather(*tasks)
        assert len(set(ids)) == JOBS

        deadline = time.monotonic() + DEADLINE
        while True:
            counts = (await client_a.get("/api/jobs/stats/ledger")).json()["by_status"]
            if counts["completed"] == JOBS or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert counts["completed"] == JOBS, counts

        kinds = await asyncio.wait_for(stream, 60)
        watched_job = (await client_b.get(f"/api/jobs/{watched_id}")).json()
        # Every job's record, for the side-effect check: who completed it.
        completed_by: dict[str, int] = {}
        for offset in range(0, JOBS + 1, 500):
            page = (await client_a.get("/api/jobs", params={"job_type": "ledger", "limit": 500, "offset": offset})).json()
            for job in page["items"]:
                assert job["status"] == "completed"
                completed_by[job["id"]] = int(job["worker_id"].split(":")[1])

    # Each side effect once, except in attempts the SIGKILL interrupted (after the effect and
    # before the completion was written): those were by the killed worker, and the job's
    # completing attempt did its own effect again.
    assert set(completed_by) == set(ids)
    effects: dict[str, list[int]] = defaultdict(list)
    for event, job_id, pid in read_ledger(ledger):
        if event == "done" and job_id in completed_by:
            effects[job_id].append(pid)
    for job_id, pids in effects.items():
        counted = Counter(pids)
        assert counted[completed_by[job_id]] == 1, (job_id, pids)
        assert all(pid in (completed_by[job_id], killed_pid) for pid in pids), (job_id, pids)
    assert set(effects) == set(ids)

    # The SSE client on API A saw the job run by a worker, enqueued through API B: every event,
    # in order, without gap, ending with its completion.
    assert kinds[0][0] == "snapshot"
    assert kinds[-1][0] == "completed", kinds
    sequence = [event_id for _, event_id in kinds]
    assert sequence == list(range(sequence[0], sequence[0] + len(sequence))), kinds
    assert sequence[-1] == watched_job["event_seq"]
    names = {name for name, _ in kinds}
    assert "progress" in names, kinds
    # The claim's status event (seq 2, after created) is streamed, unless a worker claimed the
    # job before the stream connected (a loaded machine): then the snapshot already holds it.
    assert "status" in names or kinds[0][1] >= 2, kinds

