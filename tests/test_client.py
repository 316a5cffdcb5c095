"""jobqueue.client against a real uvicorn (``live_server``): typed results and errors, waiting on
the event stream and its fallbacks, event streams that survive a dropped connection, and which
requests are retried after a connection failure.

Jobs are moved by the test itself through ``PUT /api/jobs/{id}`` (the servers run no worker), so
every event the client sees was made while it listened, in an order the test knows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from jobqueue.api.app import create_app
from jobqueue.client import (
    ApiError,
    ConnectionFailed,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobQueueClient,
    SSEParser,
    WaitTimeout,
)
from jobqueue.models import EventKind, Job, JobEvent, JobList, JobStats, JobStatus
from jobqueue.settings import Settings

from .conftest import free_port, running_server

SERVER_ENV = {"RUN_WORKER": "false", "SSE_KEEPALIVE": "0.2"}
#: Ceiling of every wait in these tests; generous, the machine is shared and noisy.
CEILING = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[str]:
    """One server per backend for the module; each test uses its own job types."""
    with running_server(tmp_path_factory.mktemp("server"), module_database_url, **SERVER_ENV) as url:
        yield url


@pytest.fixture
async def jq(server: str) -> AsyncIterator[JobQueueClient]:
    async with JobQueueClient(server, backoff=0.01) as client:
        yield client


async def put(url: str, job_id: str, **body: Any) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.put(f"{url}/api/jobs/{job_id}", json=body)
        assert response.status_code == 200, response.text


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + CEILING
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- plain calls -----------------------------------------------------------------------------------


async def test_enqueue_get_list_stats_decode_into_the_service_types(jq: JobQueueClient) -> None:
    job = await jq.enqueue("decode-a", {"w": 64}, priority=5, max_attempts=2, timeout=30.0)
    assert isinstance(job, Job)
    assert (job.job_type, job.status, job.priority, job.max_attempts) == ("decode-a", JobStatus.QUEUED, 5, 2)
    assert job.request_data == {"w": 64}

    fetched = await jq.get(job.id)
    assert fetched.id == job.id and fetched.created_at == job.created_at

    await jq.enqueue("decode-a")
    await jq.enqueue("decode-b")
    page = await jq.list(job_type="decode-a", limit=1)
    assert isinstance(page, JobList)
    assert len(page.items) == 1 and page.total == 2 and page.limit == 1
    assert (await jq.list(job_type="decode-a", offset=1)).items[0].id == job.id  # newest first
    assert (await jq.list(job_type="decode-b", status=["queued", JobStatus.COMPLETED])).total == 1
    assert (await jq.list(job_type="decode-b", status="completed")).total == 0

    stats = await jq.stats("decode-a")
    assert isinstance(stats, JobStats)
    assert stats.total == 2 and stats.by_status["queued"] == 2 and stats.job_type == "decode-a"
    assert (await jq.stats()).total >= 3


async def test_idempotency_key_returns_the_first_job(jq: JobQueueClient) -> None:
    first = await jq.enqueue("report", {"n": 1}, idempotency_key="report-1")
    again = await jq.enqueue("report", {"n": 1}, idempotency_key="report-1")
    assert again.id == first.id
    assert (await jq.list(job_type="report")).total == 1


async def test_cancel_and_retry(jq: JobQueueClient) -> None:
    job = await jq.enqueue("thumbnail")
    cancelled = await jq.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    retried = await jq.retry(job.id)
    assert retried.status is JobStatus.QUEUED and retried.id == job.id


async def test_typed_errors(jq: JobQueueClient) -> None:
    with pytest.raises(JobNotFound) as missing:
        await jq.get("no-such-job")
    assert missing.value.job_id == "no-such-job"
    assert missing.value.status_code == 404 and missing.value.code == "job_not_found"
    for call in (jq.cancel, jq.retry, lambda job_id: jq.wait(job_id, timeout=5)):
        with pytest.raises(JobNotFound):
            await call("no-such-job")

    queued = await jq.enqueue("thumbnail")
    with pytest.raises(ApiError) as conflict:
        await jq.retry(queued.id)  # only finished jobs can be retried
    assert conflict.value.status_code == 409 and conflict.value.code == "invalid_transition"
    assert not isinstance(conflict.value, JobNotFound)

    with pytest.raises(ApiError) as invalid:
        await jq.enqueue("")
    assert invalid.value.status_code == 422
    assert invalid.value.body is not None and invalid.value.body.field == "job_type"


async def test_unreachable_server_is_a_connection_failure() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with JobQueueClient(url, retries=2, backoff=0.01) as client:
        with pytest.raises(ConnectionFailed) as failure:
            await client.get("x")
        assert url in str(failure.value)
        with pytest.raises(ConnectionFailed):
            await client.enqueue("thumbnail")


# -- waiting ---------------------------------------------------------------------------------------


async def test_wait_follows_the_event_stream_to_completion(server: str, jq: JobQueueClient) -> None:
    job = await jq.enqueue("render")
    seen: list[Job | JobEvent] = []
    waiter = asyncio.create_task(jq.wait(job.id, timeout=CEILING, on_update=seen.append))
    await until(lambda: len(seen) >= 1, "the snapshot")  # listening before the job moves
    await put(server, job.id, status="processing", progress=10, message="started")
    await put(server, job.id, progress=60, message="halfway")
    await put(server, job.id, status="completed", result_data={"frames": 24})
    done = await waiter

    assert done.status is JobStatus.COMPLETED and done.result_data == {"frames": 24}
    assert isinstance(seen[0], Job) and seen[0].status is JobStatus.QUEUED
    events = [item for item in seen if isinstance(item, JobEvent)]
    assert [(e.status, e.progress, e.message) for e in events] == [
        (JobStatus.PROCESSING, 10, "started"),
        (JobStatus.PROCESSING, 60, "halfway"),
        (JobStatus.COMPLETED, 100, "halfway"),
    ]
    assert isinstance(seen[-1], Job) and seen[-1].status is JobStatus.COMPLETED


async def test_wait_on_a_finished_job_returns_at_once(server: str, jq: JobQueueClient) -> None:
    job = await jq.enqueue("render")
    await put(server, job.id, status="completed", result_data=1)
    assert (await jq.wait(job.id, timeout=CEILING)).result_data == 1


async def test_wait_raises_for_failed_and_cancelled_jobs(server: str, jq: JobQueueClient) -> None:
    failing = await jq.enqueue("render")
    await put(server, failing.id, status="failed", error="out of paint")
    with pytest.raises(JobFailed) as failed:
        await jq.wait(failing.id, timeout=CEILING)
    assert not isinstance(failed.value, JobCancelled)
    assert failed.value.job.error == "out of paint"
    unchecked = await jq.wait(failing.id, timeout=CEILING, raise_on_failure=False)
    assert unchecked.status is JobStatus.FAILED

    cancelled = await jq.enqueue("render")
    waiter = asyncio.create_task(jq.wait(cancelled.id, timeout=CEILING))
    await asyncio.sleep(0.2)
    await jq.cancel(cancelled.id)
    with pytest.raises(JobCancelled) as stopped:
        await waiter
    assert stopped.value.job.status is JobStatus.CANCELLED


async def test_wait_timeout_carries_the_last_state_seen(jq: JobQueueClient) -> None:
    job = await jq.enqueue("render")
    with pytest.raises(WaitTimeout) as timeout:
        await jq.wait(job.id, timeout=0.5)
    assert isinstance(timeout.value, TimeoutError)
    assert timeout.value.job is not None and timeout.value.job.status is JobStatus.QUEUED


@contextlib.asynccontextmanager
async def app_without(settings: Settings, *paths: str) -> AsyncIterator[JobQueueClient]:
    """The real app minus some routes (an older server), its lifespan entered, over ASGI."""
    app = create_app(settings)
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) not in paths]
    async with app.router.lifespan_context(app) as state:

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        async with JobQueueClient("http://test", transport=httpx.ASGITransport(app=asgi)) as client:
            yield client


@pytest.mark.parametrize(
    "missing",
    [
        ("/api/jobs/{job_id}/events",),  # falls back to the long-poll wait endpoint
        ("/api/jobs/{job_id}/events", "/api/jobs/{job_id}/wait"),  # falls back to polling
    ],
)
async def test_wait_falls_back_when_the_server_has_no_stream(settings: Settings, missing: tuple[str, ...]) -> None:
    async with app_without(settings, *missing) as client:
        job = await client.enqueue("render")
        seen: list[Job | JobEvent] = []
        waiter = asyncio.create_task(client.wait(job.id, timeout=CEILING, on_update=seen.append))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        await client._http.put(f"/api/jobs/{job.id}", json={"status": "completed", "result_data": "ok"})
        done = await waiter
        assert done.result_data == "ok"
        assert seen and all(isinstance(item, Job) for item in seen)


# -- event streams ---------------------------------------------------------------------------------


class CuttableProxy:
    """A TCP proxy in front of the server whose open connections the test can cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        #: Every byte the client sent, to see which requests went through.
        self.sent = bytearray()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def requests_for(self, path: str) -> int:
        return self.sent.count(f"GET {path} ".encode())

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await asyncio.gather(*self._handlers)
        await self._server.wait_closed()

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.update({writer, up_writer})

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    if sink is up_writer:
                        self.sent.extend(data)
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass  # the other side was cut: this direction ends too
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_events_resume_after_a_dropped_connection_without_gap_or_repeat(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    async with CuttableProxy(port) as proxy, JobQueueClient(
        f"http://127.0.0.1:{proxy.port}", backoff=0.05
    ) as client:
        job = await client.enqueue("render")
        received: list[JobEvent] = []

        async def follow() -> None:
            async for event in client.events(job.id):
                assert isinstance(event, JobEvent)
                received.append(event)

        stream = f"/api/jobs/{job.id}/events"
        follower = asyncio.create_task(follow())
        await until(lambda: proxy.requests_for(stream) == 1, "the stream to open")
        await asyncio.sleep(0.2)  # the server subscribes before it answers; let it answer
        await put(server, job.id, status="processing", progress=10)
        await until(lambda: len(received) == 1, "the first event")

        proxy.cut()
        # Made while the client is disconnected (or reconnecting): it must get them by replay.
        await put(server, job.id, progress=40)
        await put(server, job.id, progress=70)
        await until(lambda: len(received) == 3, "the replayed events")
        proxy.cut()
        await put(server, job.id, status="completed")
        await asyncio.wait_for(follower, CEILING)

    assert [e.seq for e in received] == list(range(received[0].seq, received[0].seq + 4))
    assert [e.progress for e in received] == [10, 40, 70, 100]
    assert received[-1].kind is EventKind.COMPLETED
    assert proxy.requests_for(stream) >= 3  # the first and two resumed after the cuts
    assert proxy.sent.count(b"last-event-id:") >= 2


async def test_events_with_snapshots_start_with_the_job(server: str, jq: JobQueueClient) -> None:
    job = await jq.enqueue("render")
    await put(server, job.id, status="processing", progress=5)
    items: list[Job | JobEvent] = []

    async def follow() -> None:
        async for item in jq.events(job.id, snapshots=True):
            items.append(item)

    follower = asyncio.create_task(follow())
    await until(lambda: len(items) == 1, "the snapshot")
    await put(server, job.id, status="failed", error="boom")
    await asyncio.wait_for(follower, CEILING)
    assert isinstance(items[0], Job) and items[0].progress == 5
    assert isinstance(items[1], JobEvent) and items[1].kind is EventKind.FAILED
    assert items[1].data == {"error": "boom"}
    assert len(items) == 2


async def test_events_from_a_given_event_id_replay_the_history(server: str, jq: JobQueueClient) -> None:
    job = await jq.enqueue("render")
    await put(server, job.id, status="processing", progress=20)
    await put(server, job.id, status="completed")
    kinds = [e.kind async for e in jq.events(job.id, last_event_id=0) if isinstance(e, JobEvent)]
    assert kinds == [EventKind.CREATED, EventKind.STATUS, EventKind.COMPLETED]


# -- retries ---------------------------------------------------------------------------------------


class SlammingServer:
    """Accepts each connection, reads the request and closes without answering."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> SlammingServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()


@pytest.mark.parametrize(
    ("call", "attempts"),
    [
        (lambda c: c.get("x"), 4),
        (lambda c: c.list(), 4),
        (lambda c: c.enqueue("thumbnail", idempotency_key="k"), 4),
        (lambda c: c.enqueue("thumbnail"), 1),  # could create the job twice
        (lambda c: c.cancel("x"), 1),
        (lambda c: c.retry("x"), 1),
    ],
    ids=["get", "list", "enqueue-with-key", "enqueue-without-key", "cancel", "retry"],
)
async def test_only_safe_requests_are_repeated_after_a_dropped_connection(
    call: Callable[[JobQueueClient], Any], attempts: int
) -> None:
    async with SlammingServer() as slam, JobQueueClient(slam.url, retries=3, backoff=0.01) as client:
        with pytest.raises(ConnectionFailed):
            await call(client)
        assert slam.connections == attempts


def test_sse_parser_follows_the_line_protocol() -> None:
    parser = SSEParser()
    lines = [": keep-alive", "", "id: 7", "event: progress", "data: {\"a\":", "data: 1}", "", "data:x", "retry: 50", ""]
    out = [message for line in lines if (message := parser.feed(line)) is not None]
    assert [(m.event, m.id, m.data) for m in out] == [("progress", "7", '{"a":\n1}'), ("message", None, "x")]
    assert parser.last_event_id == "7" and parser.retry_ms == 50
