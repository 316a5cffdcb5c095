"""What a Registry accepts, how a plain ``def`` handler runs, and which types a user's worker claims."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from jobqueue.models import JobStatus
from jobqueue.service import JobQueueService
from jobqueue.worker import JobContext, Registry, WorkerPool
from tests.conftest import drain, subprocess_env

DEADLINE = 30.0


def test_a_handler_that_cannot_take_the_context_is_refused_at_registration() -> None:
    registry = Registry()

    async def no_arguments() -> None: ...

    async def two_arguments(ctx: JobContext, extra: int) -> None: ...

    with pytest.raises(TypeError, match=r"^handler .*no_arguments for job type 'a' must take exactly one argument"):
        registry.add("a", no_arguments)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="two_arguments for job type 'b' must take exactly one argument"):
        registry.add("b", two_arguments)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handler for job type 'c' is not callable"):
        registry.add("c", "resize")  # type: ignore[arg-type]
    assert registry.handlers == {}

    async def with_default(ctx: JobContext, extra: int = 1) -> None: ...

    registry.add("d", with_default)  # a default for the rest is fine: called with ctx only
    assert registry.threaded == set()


async def test_a_plain_def_handler_runs_in_a_thread_and_reports_progress(service: JobQueueService) -> None:
    registry = Registry()
    loop_thread = threading.get_ident()
    seen: dict[str, Any] = {}

    @registry.handler("blocking")
    def blocking(ctx: JobContext) -> dict[str, int]:
        seen["thread"] = threading.get_ident()
        ctx.from_thread(ctx.set_status("rendering", "half way", progress=50))
        return {"doubled": ctx.request_data["n"] * 2}

    assert registry.threaded == {"blocking"}
    job_id = await service.enqueue_job("blocking", {"n": 21})
    await asyncio.wait_for(drain(service, registry), DEADLINE)

    job = await service.require_job(job_id)
    assert job.status is JobStatus.COMPLETED and job.result_data == {"doubled": 42}
    assert seen["thread"] != loop_thread
    kinds = [(e.kind.value, e.status.value, e.progress) for e in await service.job_events(job_id)]
    assert ("status", "rendering", 50) in kinds


async def test_a_plain_def_handler_that_raises_fails_the_attempt(service: JobQueueService) -> None:
    registry = Registry()

    @registry.handler("broken")
    def broken(ctx: JobContext) -> None:
        raise ValueError("bad input in a thread")

    job_id = await service.enqueue_job("broken", max_attempts=1)
    await asyncio.wait_for(drain(service, registry), DEADLINE)
    job = await service.require_job(job_id)
    assert job.status is JobStatus.FAILED and job.error == "ValueError: bad input in a thread"


async def test_a_lambda_returning_a_coroutine_is_awaited(service: JobQueueService) -> None:
    registry = Registry()

    async def double(n: int) -> int:
        return n * 2

    registry.add("lambda", lambda ctx: double(ctx.request_data))
    job_id = await service.enqueue_job("lambda", 4)
    await asyncio.wait_for(drain(service, registry), DEADLINE)
    assert (await service.require_job(job_id)).result_data == 8


async def test_from_thread_outside_a_thread_handler_is_refused(service: JobQueueService) -> None:
    registry = Registry()
    refused: list[str] = []

    @registry.handler("async")
    async def handler(ctx: JobContext) -> None:
        coroutine = ctx.progress(10)
        try:
            ctx.from_thread(coroutine)
        except RuntimeError as exc:
            refused.append(str(exc))
        finally:
            coroutine.close()

    await service.enqueue_job("async")
    pool = WorkerPool(service, registry, poll_interval=0.01)
    await asyncio.wait_for(pool.run(burst=True), DEADLINE)
    assert refused == ["from_thread is for plain def handlers, which run in a thread"]


def worker(*args: str, cwd: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue", "worker", "--burst", *args],
        cwd=cwd,
        env=subprocess_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_users_registry_claims_only_its_own_types_unless_it_opts_in(
    service: JobQueueService, database_url: str, tmp_path: Path
) -> None:
    generation = await service.enqueue_job("generation", {"model": "musicgen-small", "prompt": "x", "duration": 1})
    ledger = await service.enqueue_job("ledger", {"ledger": str(tmp_path / "ledger")})

    result = worker("--registry", "tests.handlers:registry", cwd=Path.cwd(), database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert (await service.require_job(ledger)).status is JobStatus.COMPLETED
    assert (await service.require_job(generation)).status is JobStatus.QUEUED

    result = worker(
        "--registry", "tests.handlers:registry", "--with-examples", "--job-types", "generation",
        cwd=Path.cwd(), database_url=database_url,
    )
    assert result.returncode == 0, result.stderr
    assert (await service.require_job(generation)).status is JobStatus.COMPLETED


def test_a_registry_attribute_that_is_not_a_registry_is_one_line(tmp_path: Path) -> None:
    result = worker("--registry", "tests.handlers:_data", cwd=Path.cwd(), database_url=f"sqlite:///{tmp_path / 'j.db'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "jobqueue: error: cannot load registry 'tests.handlers:_data': it is a function, not a jobqueue Registry"
    ]


@pytest.mark.parametrize(
    ("returned", "reason"),
    [
        (object(), "it is not JSON (Encoding objects of type object is unsupported)"),
        ({"text": "a\x00b"}, "result.text contains a NUL character"),
        ([1, 2**60], "result[1] is an integer beyond ±2^53"),
    ],
)
async def test_a_result_that_cannot_be_stored_fails_the_attempt_at_once(
    service: JobQueueService, returned: Any, reason: str
) -> None:
    registry = Registry()

    @registry.handler("odd-result")
    async def handler(ctx: JobContext) -> Any:
        return returned

    job_id = await service.enqueue_job("odd-result", max_attempts=1)
    pool = await asyncio.wait_for(drain(service, registry), DEADLINE)
    job = await service.require_job(job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1 and job.lease_expires_at is None
    assert job.error is not None
    assert job.error.startswith(f"the handler's return value cannot be stored as result_data: {reason}")
    assert pool.processed == 1
