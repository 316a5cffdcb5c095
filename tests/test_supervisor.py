"""Several processes under one supervisor: ``jobqueue worker --processes N`` and
``jobqueue serve --workers N``, real processes that the tests kill and signal.

Children are found by the supervisor's log line ``<name> <index> started (pid N)``; effects are
counted in a ledger file (``tests/handlers.py``) that names the pid of each.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobqueue.models import JobStatus
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings
from jobqueue.supervisor import MAX_QUICK_EXITS, Supervisor
from tests.conftest import subprocess_env
from tests.handlers import read_ledger
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

STARTED = re.compile(r"(\w+) (\d+) started \(pid (\d+)\)")


class Supervised:
    """One supervisor process started by a test, its log in a file; killed if left running."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(command, env=subprocess_env(**env), stdout=out, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> dict[int, list[int]]:
        """Pids each child index had, in start order."""
        found: dict[int, list[int]] = {}
        for _, index, pid in STARTED.findall(self.log()):
            found.setdefault(int(index), []).append(int(pid))
        return found

    async def wait_exit(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"supervisor still running after {timeout:g}s:\n{self.log()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # its children get SIGTERM from the kernel (PR_SET_PDEATHSIG)
        self.proc.wait()


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[list[Supervised]]:
    started: list[Supervised] = []
    yield started
    for s in started:
        s.kill()


def start_workers(
    supervised: list[Supervised], tmp_path: Path, settings: Settings, processes: int, **env: str
) -> Supervised:
    command = [
        sys.executable, "-m", "jobqueue", "worker", "--processes", str(processes),
        "--registry", "tests.handlers:registry", "--job-types", "ledger,gate",
        "--concurrency", "2", "--log-level", "info",
    ]  # fmt: skip
    defaults = {
        "DATABASE_URL": settings.database_url,
        "LEASE_SECONDS": "1",
        "POLL_INTERVAL": "0.05",
        "SHUTDOWN_GRACE": "30",
    }
    s = Supervised(command, {**defaults, **env}, tmp_path / f"supervisor-{len(supervised)}.log")
    supervised.append(s)
    return s


async def test_a_killed_worker_process_is_restarted_and_no_job_is_lost(
    service: JobQueueService, supervised: list[Supervised], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    ids = [await service.enqueue_job("ledger", {"ledger": str(ledger), "seconds": 0.05}) for _ in range(120)]
    workers = start_workers(supervised, tmp_path, service.settings, processes=2)

    async def both_working() -> bool:
        return len({pid for _, _, pid in read_ledger(ledger)}) >= 2

    await wait_until(both_working, "both worker processes to finish jobs")
    victim = workers.children()[1][0]


    os.kill(victim, signal.SIGKILL)

    async def restarted() -> bool:
        return len(workers.children().get(1, [])) == 2

    await wait_until(restarted, "the killed child to be restarted")

    async def all_completed() -> bool:
        return (await service.get_stats()).by_status.get("completed", 0) == len(ids)

    await wait_until(all_completed, "every job to be completed")
    done = Counter(j for e, j, _ in read_ledger(ledger) if e == "done")
    assert set(done) == set(ids)  # at least once: the killed child's jobs ran again after their lease
    new_pid = workers.children()[1][1]
    assert new_pid != victim
    assert "died (exit status -9); restarting it" in workers.log()

    workers.proc.send_signal(signal.SIGTERM)
    assert await workers.wait_exit() == 0, workers.log()


async def test_sigterm_drains_every_worker_process(
    service: JobQueueService, supervised: list[Supervised], tmp_path: Path
) -> None:
    ledger, gate = tmp_path / "ledger.txt", tmp_path / "gate"
    ids = [await service.enqueue_job("gate", {"ledger": str(ledger), "gate": str(gate)}) for _ in range(4)]
    workers = start_workers(supervised, tmp_path, service.settings, processes=2)

    async def four_started() -> bool:
        return sum(1 for e, _, _ in read_ledger(ledger) if e == "started") == 4

    # Concurrency 2 per process: four running jobs are two in each.
    await wait_until(four_started, "four jobs to start")
    assert len({pid for _, _, pid in read_ledger(ledger)}) == 2

    workers.proc.send_signal(signal.SIGTERM)

    async def draining() -> bool:
        return workers.log().count("stopping: 2 running job(s)") == 2

    await wait_until(draining, "both processes to start draining")
    late = await service.enqueue_job("ledger", {"ledger": str(ledger)})
    gate.touch()
    assert await workers.wait_exit() == 0, workers.log()

    for job_id in ids:
        finished = await service.require_job(job_id)
        assert finished.status is JobStatus.COMPLETED
        assert finished.attempts == 1
    assert (await service.require_job(late)).status is JobStatus.QUEUED
    assert "restarting" not in workers.log()


def test_a_child_that_keeps_failing_at_start_stops_the_supervisor() -> None:
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = time.monotonic()
    code = Supervisor("test", [sleeper, failing], restart_clean_exit=True).run()  # signals: main thread
    assert code == 1
    # Backoff between the quick exits, then the sleeper is stopped by SIGTERM, not waited for.
    assert time.monotonic() - started < 30
    assert MAX_QUICK_EXITS > 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_workers_share_the_port_and_a_killed_one_comes_back(
    service: JobQueueService, supervised: list[Supervised], tmp_path: Path
) -> None:
    port = free_port()
    ledger = tmp_path / "ledger.txt"
    command = [
        sys.executable, "-m", "jobqueue", "serve", "--workers", "2", "--port", str(port),
        "--registry", "tests.handlers:registry", "--job-types", "ledger", "--log-level", "info",
    ]  # fmt: skip
    env = {"DATABASE_URL": service.settings.database_url, "POLL_INTERVAL": "0.05"}
    server = Supervised(command, env, tmp_path / "serve.log")
    supervised.append(server)
    # Besides the servers, two worker processes on the same database: four writers in all.
    workers = start_workers(supervised, tmp_path, service.settings, processes=2)
    base = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(base + "/health")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(up, "the servers to answer")
    body = {"job_type": "ledger", "request_data": {"ledger": str(ledger)}}
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(*(client.post("/api/jobs", json=body) for _ in range(600)))
        # Every enqueue committed, through either process; none saw "database is locked".
        assert Counter(r.status_code for r in responses) == {201: 600}, [r.text for r in responses[:3]]
        ids = [r.json()["id"] for r in responses]

        victim = server.children()[1][0]


        os.kill(victim, signal.SIGKILL)

        async def restarted() -> bool:
            return len(server.children().get(1, [])) == 2

        await wait_until(restarted, "the killed server process to be restarted")
        await wait_until(up, "the servers to answer after the restart")
        more = await asyncio.gather(*(client.post("/api/jobs", json=body) for _ in range(100)))
        assert Counter(r.status_code for r in more) == {201: 100}
        ids += [r.json()["id"] for r in more]

    async def all_completed() -> bool:
        return (await service.get_stats()).by_status.get("completed", 0) == len(ids)

    await wait_until(all_completed, "every job to be completed")
    # The in-process pool runs in server 0 only; the rest ran in the worker processes.
    finished = {(await service.require_job(i)).worker_id for i in ids}
    server_pids = {str(pid) for index, pids in server.children().items() for pid in pids if index > 0}
    assert not any(worker_id.split(":")[1] in server_pids for worker_id in finished if worker_id)

    server.proc.send_signal(signal.SIGTERM)
    workers.proc.send_signal(signal.SIGTERM)
    assert await server.wait_exit() == 0, server.log()
    assert await workers.wait_exit() == 0, workers.log()
