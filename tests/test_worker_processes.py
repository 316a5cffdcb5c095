"""Worker pools in real processes (``python -m jobqueue worker``) that the tests kill, freeze and
signal, against one SQLite file. Effects are counted in a ledger file (see ``tests/handlers.py``).

Every wait is a deadline on a condition, never a fixed sleep that a slow machine could outrun.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from jobqueue.models import Job, JobStatus
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings
from tests.conftest import subprocess_env
from tests.handlers import read_ledger
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

#: Ceiling of every wait; generous because two shared cores can stall a process for seconds.
DEADLINE = 45.0


class Workers:
    """Starts ``python -m jobqueue worker`` processes on the test database; kills leftovers."""

    def __init__(self, tmp_path: Path, settings: Settings) -> None:
        self.tmp_path = tmp_path
        self.settings = settings
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, *, concurrency: int = 4, burst: bool = False, **env: str) -> subprocess.Popen[bytes]:
        defaults = {
            "DATABASE_URL": self.settings.database_url,
            "LEASE_SECONDS": "1",
            "POLL_INTERVAL": "0.05",
            "RETRY_BASE_DELAY": "0.05",
            "SHUTDOWN_GRACE": "10",
        }
        full_env = subprocess_env(**{**defaults, **env})
        command = [
            sys.executable, "-m", "jobqueue", "worker",
            "--registry", "tests.handlers:registry",
            "--job-types", "ledger,gate,crash,freeze,long",
            "--concurrency", str(concurrency),
            "--log-level", "info",
        ]  # fmt: skip
        if burst:
            command.append("--burst")
        log = self.tmp_path / f"worker-{len(self.procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    async def wait_exit(self, proc: subprocess.Popen[bytes], timeout: float = DEADLINE) -> int:
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {proc.pid} still running after {timeout:g}s:\n{self.log(proc)}")
            await asyncio.sleep(0.05)
        return proc.returncode

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()


@pytest.fixture
def workers(tmp_path: Path, settings: Settings) -> Iterator[Workers]:
    w = Workers(tmp_path, settings)
    yield w
    w.cleanup()


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


async def job(service: JobQueueService, job_id: str) -> Job:
    return await service.require_job(job_id)


def has_status(service: JobQueueService, job_id: str, *statuses: JobStatus) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await job(service, job_id)).status in statuses

    return check


def ledger_has(ledger: Path, event: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return sum(1 for e, _, _ in read_ledger(ledger) if e == event) >= count

    return check


async def test_killed_worker_job_is_reclaimed_and_completed_by_another(
    service: JobQueueService, workers: Workers, ledger: Path, tmp_path: Path
) -> None:
    gate_file = tmp_path / "gate"
    held = await service.enqueue_job("gate", {"ledger": str(ledger), "gate": str(gate_file)}, priority=10)
    others = [await service.enqueue_job("ledger", {"ledger": str(ledger), "seconds": 0.2}) for _ in range(20)]
    first = workers.start(concurrency=4)
    await wait_until(ledger_has(ledger, "started", 1), "the first worker to start the gate job")
    assert (await job(service, held)).worker_id is not None

    first.send_signal(signal.SIGKILL)
    assert await workers.wait_exit(first) == -signal.SIGKILL
    gate_file.touch()
    second = workers.start(concurrency=4)

    await wait_until(has_status(service, held, JobStatus.COMPLETED), "the held job to be completed")
    for job_id in others:
        await wait_until(has_status(service, job_id, JobStatus.COMPLETED), f"job {job_id} to be completed")

    finished = await job(service, held)
    assert finished.attempts == 2  # the killed attempt counted, the second one finished
    assert finished.result_data == {"pid": second.pid}
    entries = read_ledger(ledger)
    assert [(e, pid) for e, j, pid in entries if j == held] == [
        ("started", first.pid),
        ("started", second.pid),
        ("done", second.pid),
    ]
    done = Counter(j for e, j, _ in entries if e == "done")
    # At least once: a job the killed worker was running may have had its effect twice.
    assert all(done[j] >= 1 for j in others)


async def test_four_processes_complete_5000_jobs_each_effect_exactly_once(
    service: JobQueueService, workers: Workers, ledger: Path
) -> None:
    ids: list[str] = []
    for _ in range(10):
        ids += await asyncio.gather(
            *(service.enqueue_job("ledger", {"ledger": str(ledger)}) for _ in range(500))
        )
    # A lease far longer than any stall of a loaded machine: this test is about no crash at all.
    procs = [workers.start(concurrency=20, burst=True, LEASE_SECONDS="30") for _ in range(4)]
    for proc in procs:
        assert await workers.wait_exit(proc, timeout=240) == 0, workers.log(proc)

    jobs, total = await service.list_jobs(status=JobStatus.COMPLETED, limit=1, job_type="ledger")
    assert total == 5000
    stats = await service.get_stats()
    assert stats.by_status["completed"] == 5000 and stats.total == 5000
    entries = read_ledger(ledger)
    done = Counter(j for e, j, _ in entries if e == "done")
    assert set(done) == set(ids)
    assert max(done.values()) == 1
    assert len(entries) == 5000
    page, _ = await service.list_jobs(status=JobStatus.COMPLETED, limit=500)
    assert all(j.attempts == 1 for j in page)


async def test_job_five_times_longer_than_its_lease_is_never_reclaimed(
    service: JobQueueService, workers: Workers, ledger: Path
) -> None:
    # One job only heartbeats, the other also reports progress (which renews the lease too).
    quiet = await service.enqueue_job("ledger", {"ledger": str(ledger), "seconds": 5})
    chatty = await service.enqueue_job("long", {"ledger": str(ledger), "seconds": 5})
    # Two pools (and two reapers) that would take over any lapsed lease at once.
    workers.start(concurrency=1)
    workers.start(concurrency=1)
    for job_id in (quiet, chatty):
        await wait_until(has_status(service, job_id, JobStatus.COMPLETED), f"job {job_id} to complete")
        finished = await job(service, job_id)
        assert finished.attempts == 1
        assert finished.error is None
    done = Counter(j for e, j, _ in read_ledger(ledger) if e == "done")
    assert done == {quiet: 1, chatty: 1}


async def test_frozen_worker_loses_its_lease_and_its_late_completion_changes_nothing(
    service: JobQueueService, workers: Workers, ledger: Path
) -> None:
    job_id = await service.enqueue_job("freeze", {"ledger": str(ledger), "seconds": 5})
    frozen = workers.start(concurrency=1)
    await wait_until(ledger_has(ledger, "started", 1), "the first attempt to start")
    rescuer = workers.start(concurrency=1)

    await wait_until(has_status(service, job_id, JobStatus.COMPLETED), "the second attempt to complete")
    rescued = await job(service, job_id)
    assert rescued.attempts == 2
    assert rescued.result_data == {"pid": rescuer.pid, "attempt": 2}

    # The frozen process wakes up, finishes its handler and tries to complete: it is refused.
    async def frozen_was_refused() -> bool:
        return f"job {job_id} is completed; this claim is no longer valid" in workers.log(frozen)

    await wait_until(ledger_has(ledger, "done", 2), "the frozen attempt to finish its handler")
    await wait_until(frozen_was_refused, "the frozen worker's completion to be refused")
    after = await job(service, job_id)
    assert after.result_data == rescued.result_data
    assert after.completed_at == rescued.completed_at
    assert after.worker_id == rescued.worker_id
    assert after.attempts == 2
    assert frozen.poll() is None  # losing a lease is not a reason for the pool to die


async def test_poison_job_fails_after_its_attempts_while_the_pools_keep_working(
    service: JobQueueService, workers: Workers, ledger: Path
) -> None:
    poison = await service.enqueue_job("crash", {"ledger": str(ledger)}, priority=5, max_attempts=3)
    # Jobs that happen to be running in a worker the poison job kills lose an attempt too.
    others = [
        await service.enqueue_job("ledger", {"ledger": str(ledger), "seconds": 0.1}, max_attempts=10)
        for _ in range(30)
    ]
    live = [workers.start(concurrency=4), workers.start(concurrency=4)]
    killed: list[int] = []

    async def settled_with_supervision() -> bool:
        # A supervisor (systemd, Kubernetes) restarts workers that die; this is that supervisor.
        for i, proc in enumerate(live):
            if proc.poll() is not None:
                killed.append(proc.returncode)
                live[i] = workers.start(concurrency=4)
        poison_job = await job(service, poison)
        pending = await service.list_jobs(status=["queued", "processing"], job_type="ledger", limit=1)
        return poison_job.status is JobStatus.FAILED and pending[1] == 0

    await wait_until(settled_with_supervision, "the poison job to fail and the others to complete", 90)

    failed = await job(service, poison)
    assert failed.attempts == 3
    assert failed.error is not None and "crashing its worker" in failed.error
    assert killed == [-signal.SIGKILL] * 3
    assert sum(1 for e, j, _ in read_ledger(ledger) if j == poison) == 3
    for job_id in others:
        assert (await job(service, job_id)).status is JobStatus.COMPLETED
    assert all(proc.poll() is None for proc in live)


async def test_sigterm_lets_running_jobs_finish_within_the_grace_period(
    service: JobQueueService, workers: Workers, ledger: Path, tmp_path: Path
) -> None:
    gate_file = tmp_path / "gate"
    ids = [await service.enqueue_job("gate", {"ledger": str(ledger), "gate": str(gate_file)}) for _ in range(3)]
    proc = workers.start(concurrency=4, SHUTDOWN_GRACE="30")
    await wait_until(ledger_has(ledger, "started", 3), "three jobs to start")

    proc.send_signal(signal.SIGTERM)

    async def draining() -> bool:
        return "stopping: 3 running job(s)" in workers.log(proc)

    await wait_until(draining, "the worker to start draining")
    # It stopped claiming: a job queued now stays queued.
    late = await service.enqueue_job("ledger", {"ledger": str(ledger)})
    gate_file.touch()
    assert await workers.wait_exit(proc) == 0, workers.log(proc)

    for job_id in ids:
        finished = await job(service, job_id)
        assert finished.status is JobStatus.COMPLETED
        assert finished.attempts == 1
        assert finished.result_data == {"pid": proc.pid}
    assert (await job(service, late)).status is JobStatus.QUEUED


async def test_sigterm_after_a_short_grace_hands_jobs_back_without_counting_an_attempt(
    service: JobQueueService, workers: Workers, ledger: Path, tmp_path: Path
) -> None:
    gate_file = tmp_path / "gate"
    ids = [await service.enqueue_job("gate", {"ledger": str(ledger), "gate": str(gate_file)}) for _ in range(3)]
    proc = workers.start(concurrency=4, SHUTDOWN_GRACE="0.3")
    await wait_until(ledger_has(ledger, "started", 3), "three jobs to start")

    proc.send_signal(signal.SIGTERM)
    assert await workers.wait_exit(proc) == 0, workers.log(proc)

    for job_id in ids:
        handed_back = await job(service, job_id)
        assert handed_back.status is JobStatus.QUEUED
        assert handed_back.attempts == 0
        assert handed_back.worker_id is None
        assert handed_back.lease_expires_at is None
        assert handed_back.message == "handed back: worker shut down"
    assert Counter(e for e, _, _ in read_ledger(ledger)) == {"started": 3, "interrupted": 3}

    gate_file.touch()
    second = workers.start(concurrency=4)
    for job_id in ids:
        await wait_until(has_status(service, job_id, JobStatus.COMPLETED), f"job {job_id} to complete")
        finished = await job(service, job_id)
        assert finished.attempts == 1
        assert finished.result_data == {"pid": second.pid}


async def test_cancel_stops_a_job_running_in_another_process(
    service: JobQueueService, workers: Workers, ledger: Path, tmp_path: Path
) -> None:
    gate_file = tmp_path / "gate"  # never opened: only the cancel can end the job
    job_id = await service.enqueue_job("gate", {"ledger": str(ledger), "gate": str(gate_file)})
    proc = workers.start(concurrency=2)
    await wait_until(ledger_has(ledger, "started", 1), "the job to start")

    requested = await service.cancel_job(job_id)
    assert requested.cancel_requested and requested.status is JobStatus.PROCESSING
    await wait_until(has_status(service, job_id, JobStatus.CANCELLED), "the running job to end cancelled", 20)
    assert [e for e, j, _ in read_ledger(ledger) if j == job_id] == ["started", "interrupted"]
    cancelled = await job(service, job_id)
    assert cancelled.lease_expires_at is None
    assert cancelled.attempts == 1

    # The pool carries on with other work.
    after = await service.enqueue_job("ledger", {"ledger": str(ledger)})
    await wait_until(has_status(service, after, JobStatus.COMPLETED), "the next job to complete")
    assert proc.poll() is None
