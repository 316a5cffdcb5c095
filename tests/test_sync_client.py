"""jobqueue.sync_client against a real uvicorn: blocking enqueue, get and wait, its typed
errors, many threads sharing one client, and a client used again after a fork."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from jobqueue.client import ConnectionFailed, JobFailed, JobNotFound, WaitTimeout
from jobqueue.models import JobStatus
from jobqueue.sync_client import SyncJobQueueClient

from .conftest import free_port, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[str]:
    """A server with no worker: the tests finish jobs themselves through PUT."""
    with running_server(tmp_path_factory.mktemp("server"), module_database_url, RUN_WORKER="false") as url:
        yield url


def finish(url: str, job_id: str, **body: object) -> None:
    response = httpx.put(f"{url}/api/jobs/{job_id}", json=body)
    assert response.status_code == 200, response.text


def test_enqueue_get_and_wait_block_and_return_typed_jobs(server: str) -> None:
    with SyncJobQueueClient(server) as client:
        job = client.enqueue("sync-a", {"n": 1}, priority=5, idempotency_key="sync-a-1")
        assert job.status is JobStatus.QUEUED and job.priority == 5 and job.request_data == {"n": 1}
        assert client.enqueue("sync-a", {"n": 1}, priority=5, idempotency_key="sync-a-1").id == job.id
        assert client.get(job.id).id == job.id

        # wait blocks this thread while another finishes the job.
        timer = threading.Timer(0.3, finish, (server, job.id), {"status": "completed", "result_data": {"ok": True}})
        timer.start()
        done = client.wait(job.id, timeout=30)
        timer.join()
        assert done.status is JobStatus.COMPLETED and done.result_data == {"ok": True}
        assert client.list(job_type="sync-a").total == 1
        assert client.stats("sync-a").by_status["completed"] == 1


def test_errors_are_the_async_clients(server: str) -> None:
    with SyncJobQueueClient(server) as client:
        with pytest.raises(JobNotFound):
            client.get("no-such-job")
        job = client.enqueue("sync-b")
        with pytest.raises(WaitTimeout):
            client.wait(job.id, timeout=0.2)
        finish(server, job.id, status="failed", error="boom")
        with pytest.raises(JobFailed, match="boom"):
            client.wait(job.id, timeout=30)
        assert client.wait(job.id, timeout=30, raise_on_failure=False).status is JobStatus.FAILED
    with SyncJobQueueClient(f"http://127.0.0.1:{free_port()}", retries=0) as nowhere, pytest.raises(
        ConnectionFailed, match="cannot reach"
    ):
        nowhere.get("x")


def test_threads_share_one_client(server: str) -> None:
    with SyncJobQueueClient(server) as client, ThreadPoolExecutor(16) as threads:
        ids = list(threads.map(lambda n: client.enqueue("sync-c", {"n": n}).id, range(64)))
        fetched = list(threads.map(lambda job_id: client.get(job_id).request_data["n"], ids))
    assert len(set(ids)) == 64 and fetched == list(range(64))


def _use_after_fork(client: SyncJobQueueClient, job_id: str, answer: multiprocessing.Queue) -> None:
    answer.put((os.getpid(), client.get(job_id).id))


def test_a_client_used_before_a_fork_works_in_the_child(server: str) -> None:
    client = SyncJobQueueClient(server)
    try:
        job = client.enqueue("sync-d")  # the parent's loop thread is running now
        fork = multiprocessing.get_context("fork")
        answer = fork.Queue()
        child = fork.Process(target=_use_after_fork, args=(client, job.id, answer))
        child.start()
        pid, fetched = answer.get(timeout=30)
        child.join(30)
        assert child.exitcode == 0 and pid == child.pid and fetched == job.id
        assert client.get(job.id).id == job.id  # the parent's client is untouched
    finally:
        client.close()
