"""Worker pools you can see (issue 12, item 8), on every backend: real ``jobqueue worker``
processes register, renew their registration with their heartbeat and leave when they stop
(or, killed, once their heartbeat lapses); ``GET /api/workers`` and ``jobqueue workers`` list
them with the jobs they hold; job types no live worker serves are flagged in stats, in the
worker listing and by a ``Warning`` header on enqueue."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from jobqueue.models import Worker
from jobqueue.service import JobQueueService
from tests.conftest import assert_error, subprocess_env
from tests.helpers import run_sql, wait_until

pytestmark = pytest.mark.slow


class Pools:
    """``python -m jobqueue worker`` processes on the test database; kills leftovers."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, job_types: str, concurrency: int) -> subprocess.Popen[bytes]:
        env = subprocess_env(DATABASE_URL=self.database_url, LEASE_SECONDS="1", POLL_INTERVAL="0.05")
        command = [
            sys.executable, "-m", "jobqueue", "worker", "--registry", "tests.handlers:registry",
            "--job-types", job_types, "--concurrency", str(concurrency),
        ]  # fmt: skip
        with open(self.tmp_path / f"worker-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def pools(tmp_path: Path, database_url: str) -> Iterator[Pools]:
    p = Pools(tmp_path, database_url)
    yield p
    p.cleanup()


def by_pid(workers: list[Worker]) -> dict[int, Worker]:
    return {worker.pid: worker for worker in workers}


async def exited(proc: subprocess.Popen[bytes]) -> int:
    await wait_until(lambda: proc.poll() is not None, f"worker {proc.pid} to exit")
    return proc.returncode


def stored_worker_ids(database_url: str) -> set[str]:
    return {row["id"] for row in run_sql(database_url, "SELECT id FROM workers")}


async def test_worker_processes_register_hold_jobs_and_disappear(
    pools: Pools, service: JobQueueService, database_url: str, tmp_path: Path
) -> None:
    started = time.time()
    gated = pools.start("ledger,gate", concurrency=3)
    plain = pools.start("ledger", concurrency=2)

    async def both_listed() -> bool:
        return set(by_pid(await service.list_workers())) == {gated.pid, plain.pid}

    await wait_until(both_listed, "both pools to register")
    workers = by_pid(await service.list_workers())
    assert (workers[gated.pid].job_types, workers[gated.pid].concurrency) == (["ledger", "gate"], 3)
    assert (workers[plain.pid].job_types, workers[plain.pid].concurrency) == (["ledger"], 2)
    for worker in workers.values():
        assert worker.host == socket.gethostname()
        assert worker.started_at.timestamp() >= started - 1
        assert worker.started_at <= worker.heartbeat_at < worker.expires_at
        assert (worker.held_jobs, worker.held_job_ids) == (0, [])
    first_beat = workers[gated.pid].heartbeat_at

    async def renewed() -> bool:
        return by_pid(await service.list_workers())[gated.pid].heartbeat_at > first_beat

    await wait_until(renewed, "the registration to be renewed with the heartbeat")
    assert await service.unserved_types(["gate", "ledger", "nobody"]) == ["nobody"]

    # Only the first pool serves "gate": it holds the job while the gate file is missing.
    ledger, gate = tmp_path / "ledger.txt", tmp_path / "gate"
    job_id = await service.enqueue_job("gate", {"ledger": str(ledger), "gate": str(gate)})

    async def held() -> bool:
        return by_pid(await service.list_workers())[gated.pid].held_job_ids == [job_id]

    await wait_until(held, "the gated pool to list the job it holds")
    assert by_pid(await service.list_workers())[gated.pid].held_jobs == 1
    gate.touch()

    # A stopped pool deletes its row on its way out: gone at once, not only once it lapses.
    plain.send_signal(signal.SIGTERM)
    assert await exited(plain) == 0
    plain_id = next(w.id for w in workers.values() if w.pid == plain.pid)
    assert plain_id not in stored_worker_ids(database_url)
    assert set(by_pid(await service.list_workers())) == {gated.pid}

    # A killed pool cannot: its row stays until the heartbeat lapses, then it is not listed and
    # the cleanup (run by any reaper) deletes it.
    gated_id = workers[gated.pid].id
    gated.send_signal(signal.SIGKILL)
    assert await exited(gated) == -signal.SIGKILL
    assert gated_id in stored_worker_ids(database_url)

    async def none_listed() -> bool:
        return await service.list_workers() == []

    await wait_until(none_listed, "the killed pool's registration to lapse")
    assert await service.delete_lapsed_workers() == 1
    assert stored_worker_ids(database_url) == set()

    async def ledger_unserved() -> bool:
        # Within LIVE_TYPES_TTL the process may still answer from the set it read before.
        return await service.unserved_types(["ledger"]) == ["ledger"]

    await wait_until(ledger_unserved, "the served types to be read again", timeout=10)


async def test_unserved_types_are_flagged_in_enqueue_stats_and_the_worker_list(client: httpx.AsyncClient) -> None:
    # No worker has ever registered (a fresh install): every type is unserved.
    response = await client.post("/api/jobs", json={"job_type": "served"})
    assert response.status_code == 201
    assert response.headers["warning"] == '199 jobqueue "no live worker serves job type \'served\'"'
    assert set(response.json()) >= {"id", "status", "job_type"} and "warnings" not in response.json()

    registration = {"host": "remote-host", "pid": 42, "job_types": ["served"], "concurrency": 4}
    registered = await client.put("/api/workers/remote-1", json=registration)
    assert registered.status_code == 200, registered.text
    assert registered.json()["id"] == "remote-1" and registered.json()["job_types"] == ["served"]
    served = await client.post("/api/jobs", json={"job_type": "served"})
    assert served.status_code == 201 and "warning" not in served.headers
    typo = await client.post("/api/jobs", json={"job_type": "sevred"})
    assert "sevred" in typo.headers["warning"]
    unicode = await client.post("/api/jobs", json={"job_type": 'naïve "quoted"'})
    assert unicode.headers["warning"] == '199 jobqueue "no live worker serves job type \'na\\\\xefve \\"quoted\\"\'"'

    stats = (await client.get("/api/jobs/stats")).json()
    assert stats["unserved_types"] == ['naïve "quoted"', "sevred"]
    assert (await client.get("/api/jobs/stats/served")).json()["unserved_types"] == []
    assert (await client.get("/api/jobs/stats/sevred")).json()["unserved_types"] == ["sevred"]

    claim = await client.post("/api/workers/claim", json={"worker_id": "remote-1", "job_types": ["served"], "limit": 1})
    claimed_id = claim.json()["jobs"][0]["job"]["id"]
    listing = (await client.get("/api/workers")).json()
    assert [(w["id"], w["host"], w["pid"], w["held_jobs"], w["held_job_ids"]) for w in listing["items"]] == [
        ("remote-1", "remote-host", 42, 1, [claimed_id])
    ]
    assert listing["unserved_types"] == ['naïve "quoted"', "sevred"]

    batch = await client.post("/api/jobs/batch", json={"jobs": [{"job_type": "served"}, {"job_type": "sevred"}]})
    assert batch.status_code == 200 and "sevred" in batch.headers["warning"] and "'served'" not in batch.headers["warning"]

    assert (await client.delete("/api/workers/remote-1")).status_code == 204
    assert_error(await client.delete("/api/workers/remote-1"), 404)
    assert (await client.get("/api/workers")).json()["items"] == []
    again = await client.post("/api/jobs", json={"job_type": "served"})
    assert "'served'" in again.headers["warning"]


async def test_a_registration_is_validated(client: httpx.AsyncClient) -> None:
    good = {"host": "h", "pid": 1, "job_types": ["a"], "concurrency": 1}
    assert_error(await client.put("/api/workers/w", json={**good, "job_types": []}), 422, "job_types")
    assert_error(await client.put("/api/workers/w", json={**good, "concurrency": 0}), 422, "concurrency")
    assert_error(await client.put("/api/workers/w", json={**good, "ttl": 0.1}), 422, "ttl")
    assert_error(await client.put("/api/workers/w", json={**good, "extra": 1}), 422, "extra")
    assert_error(await client.put("/api/workers/" + "w" * 201, json=good), 422, "worker_id")
    assert (await client.get("/api/workers")).json()["items"] == []


async def test_a_registration_lapses_without_heartbeat(client: httpx.AsyncClient) -> None:
    body = {"host": "h", "pid": 1, "job_types": ["a"], "concurrency": 1, "ttl": 1}
    first = (await client.put("/api/workers/w", json=body)).json()
    await asyncio.sleep(0.01)  # a later heartbeat (the clock must move)
    renewed = (await client.put("/api/workers/w", json=body)).json()
    assert renewed["started_at"] == first["started_at"] and renewed["expires_at"] > first["expires_at"]

    async def lapsed() -> bool:
        return (await client.get("/api/workers")).json()["items"] == []

    await wait_until(lapsed, "the registration to lapse", timeout=10)


def test_jobqueue_workers_prints_a_table(pools: Pools, live_server: Callable[..., str]) -> None:
    url = live_server(RUN_WORKER="false")
    proc = pools.start("ledger,gate", concurrency=3)
    deadline = time.monotonic() + 45
    while not httpx.get(f"{url}/api/workers").json()["items"]:
        assert time.monotonic() < deadline, "the pool did not register"
        time.sleep(0.05)
    httpx.post(f"{url}/api/jobs", json={"job_type": "typo"}).raise_for_status()

    def workers(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobqueue", "workers", *args],
            env=subprocess_env(JOBQUEUE_URL=url), capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    table = workers()
    assert table.returncode == 0, table.stderr
    header, row, unserved = table.stdout.splitlines()
    assert header.split() == ["ID", "HOST", "PID", "TYPES", "CONCURRENCY", "HELD", "STARTED", "HEARTBEAT"]
    assert row.split()[1:6] == [socket.gethostname(), str(proc.pid), "ledger,gate", "3", "0"]
    assert unserved == "waiting jobs no live worker serves: typo"
    listing = json.loads(workers("--json").stdout)
    assert [w["pid"] for w in listing["items"]] == [proc.pid] and listing["unserved_types"] == ["typo"]
