"""Typed tasks: parameters declared in the signature, validated at enqueue (in the caller, and
with 422 by a server that knows the task) and before the handler runs; per-task defaults and
retry rules; handles whose result is the typed return value or the remote error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from jobqueue.client import JobFailed, JobQueueClient
from jobqueue.models import JobStatus
from jobqueue.service import JobQueueService
from jobqueue.worker import JobContext, Registry, WorkerPool
from tests.conftest import make_settings, running_server
from tests.task_handlers import Size, resize
from tests.task_handlers import registry as served_registry

DEADLINE = 30.0


class Point(msgspec.Struct):
    x: int
    y: int


def test_a_task_the_queue_cannot_call_is_refused_at_registration() -> None:
    registry = Registry()
    with pytest.raises(TypeError, match="must be an async def"):
        registry.task("a")(lambda ctx, n: n)
    with pytest.raises(TypeError, match=r"\*rest cannot be sent as JSON"):

        @registry.task("b")
        async def rest(ctx: JobContext, *rest: int) -> None: ...

    with pytest.raises(TypeError, match="must take the job context as its first argument"):

        @registry.task("c")
        async def no_context() -> None: ...

    with pytest.raises(TypeError, match="task .*unsendable.* for job type 'd'"):

        @registry.task("d")
        async def unsendable(ctx: JobContext, lock: asyncio.Lock) -> None: ...

    assert registry.handlers == {}


async def test_enqueue_checks_the_parameters_before_sending(service: JobQueueService) -> None:
    registry = Registry()

    @registry.task("plot")
    async def plot(ctx: JobContext, point: Point, label: str = "") -> None: ...

    registry.connect(service)
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int`, got `str` - at `\$.point.x`"):
        await plot.enqueue(point={"x": "one", "y": 2})
    with pytest.raises(msgspec.ValidationError, match="Object contains unknown field `colour`"):
        await plot.enqueue(point={"x": 1, "y": 2}, colour="red")
    with pytest.raises(msgspec.ValidationError, match="missing required field `point`"):
        await plot.enqueue(label="x")
    assert (await service.list_jobs())[1] == 0


async def test_in_process_the_handle_gives_the_typed_result(service: JobQueueService) -> None:
    registry = Registry()
    registry.merge(served_registry)
    served_registry.connect(service)
    try:
        handle = await resize.enqueue(src="cat.png", w=128, _priority=7)
        assert handle.job.priority == 7 and handle.job.max_attempts == 2  # the task's default
        assert handle.job.request_data == {"src": "cat.png", "w": 128}
        pool = WorkerPool(service, registry, poll_interval=0.01)
        runner = asyncio.create_task(pool.run())
        try:
            assert await asyncio.wait_for(handle.result(), DEADLINE) == Size(url="cat.png?w=128", width=128)
        finally:
            pool.stop()
            await runner
    finally:
        served_registry.target = None


async def test_retry_on_decides_which_failures_are_retried_and_follow_ups_need_no_connect(
    database_url: str,
) -> None:
    settings = make_settings(database_url, retry_base_delay=60.0)
    registry = Registry()

    @registry.task("fragile", max_attempts=3, retry_on=(ConnectionError,), retry_delay=0.01)
    async def fragile(ctx: JobContext, error: str) -> None:
        raise {"connection": ConnectionError, "value": ValueError}[error]("from the task")

    @registry.task("parent")
    async def parent(ctx: JobContext, child_error: str) -> str:
        handle = await fragile.enqueue(error=child_error)
        return handle.id

    async with JobQueueService.open(settings) as service:
        registry.connect(service)
        retried = await fragile.enqueue(error="connection")
        not_retried = await fragile.enqueue(error="value")
        registry.target = None  # from here on, only the running job's context can enqueue
        pool = WorkerPool(service, registry, poll_interval=0.01)
        runner = asyncio.create_task(pool.run())
        try:
            with pytest.raises(JobFailed, match="ConnectionError: from the task") as failed:
                await asyncio.wait_for(retried.result(), DEADLINE)
            assert failed.value.job.attempts == 3  # retried, with the task's short delay
            with pytest.raises(JobFailed, match="ValueError: from the task") as failed:
                await asyncio.wait_for(not_retried.result(), DEADLINE)
            assert failed.value.job.attempts == 1  # not in retry_on: failed at once

            job, _ = await service.create_job("parent", {"child_error": "value"})
            done = await service.wait_for_job(job.id, DEADLINE)
            assert done.status is JobStatus.COMPLETED
            child = await service.require_job(done.result_data)
            assert child.job_type == "fragile" and child.request_data == {"error": "value"}
        finally:
            pool.stop()
            await runner
    with pytest.raises(RuntimeError, match=r"fragile.enqueue: no queue to send the job to"):
        await fragile.enqueue(error="value")


async def test_data_that_does_not_fit_fails_before_the_handler_and_is_not_retried(service: JobQueueService) -> None:
    registry = Registry()
    ran: list[Any] = []

    @registry.task("strict", max_attempts=3)
    async def strict(ctx: JobContext, n: int) -> None:
        ran.append(n)

    job_id = await service.enqueue_job("strict", {"n": "not a number"}, max_attempts=3)  # bypasses validation
    pool = WorkerPool(service, registry, poll_interval=0.01)
    await asyncio.wait_for(pool.run(burst=True), DEADLINE)
    job = await service.require_job(job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1 and ran == []
    assert job.error == (
        "jobqueue.tasks.InvalidTaskParams: request_data does not fit task 'strict': "
        "Expected `int`, got `str` - at `$.n`"
    )


def test_a_server_that_knows_the_task_refuses_bad_parameters_and_runs_good_ones(
    tmp_path: Path, database_url: str
) -> None:
    env = {"WORKER_REGISTRY": "tests.task_handlers:registry", "POLL_INTERVAL": "0.05"}
    with running_server(tmp_path, database_url, **env) as url:
        refused = httpx.post(f"{url}/api/jobs", json={"job_type": "typed-resize", "request_data": {"src": 5}})
        assert refused.status_code == 422
        assert refused.json()["field"] == "request_data.src"

        async def through_the_client() -> Size:
            async with JobQueueClient(url) as client:
                handle = await resize.enqueue(src="dog.png", _via=client)
                return await handle.result(timeout=DEADLINE)

        assert asyncio.run(through_the_client()) == Size(url="dog.png?w=64", width=64)
