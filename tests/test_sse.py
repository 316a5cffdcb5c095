"""The event streams through a real uvicorn on 127.0.0.1 (httpx's ASGI transport buffers
streams): snapshot then live events to the end, Last-Event-ID replay, keep-alives, the
all-jobs stream, waiting, and events made in a worker process reaching another server process."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from jobqueue.service import JobQueueService
from tests.conftest import make_settings
from tests.event_handlers import (
    SSEMessage,
    next_message,
    read_until_end,
    sse_messages,
    worker_process,
)

SERVER_ENV = {"RUN_WORKER": "false", "SSE_KEEPALIVE": "0.2"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # Streams are read with their own ceilings; no read timeout cuts a quiet stream short.
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as client:
        yield client


async def _create(http: httpx.AsyncClient, url: str, job_type: str = "render", **body: Any) -> dict[str, Any]:
    response = await http.post(f"{url}/api/jobs", json={"job_type": job_type, **body})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _put(http: httpx.AsyncClient, url: str, job_id: str, **body: Any) -> dict[str, Any]:
    response = await http.put(f"{url}/api/jobs/{job_id}", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _ids(messages: list[SSEMessage]) -> list[int | None]:
    return [m.id for m in messages]


async def test_snapshot_then_live_events_to_the_terminal_event(
    live_server: Callable[..., str], http: httpx.AsyncClient
) -> None:
    url = live_server(**SERVER_ENV)
    job = await _create(http, url)
    async with http.stream("GET", f"{url}/api/jobs/{job['id']}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        messages = sse_messages(response)
        snapshot = await next_message(messages)
        assert (snapshot.event, snapshot.id) == ("snapshot", 1)
        assert snapshot.data["id"] == job["id"] and snapshot.data["status"] == "queued"

        live: list[SSEMessage] = []
        for change in (
            {"status": "processing"},
            {"progress": 40, "message": "rendering frames"},
            {"status": "rendering", "progress": 60},
            {"status": "completed", "result_data": {"frames": 24}},
        ):
            # Each change is made only after the previous one arrived: these are live events.
            await _put(http, url, job["id"], **change)
            live.append(await next_message(messages))
        rest = await read_until_end(messages)

    assert rest == []  # the server ended the stream right after the terminal event
    assert _ids(live) == [2, 3, 4, 5]
    assert [m.event for m in live] == ["status", "progress", "status", "completed"]
    assert [m.data["status"] for m in live] == ["processing", "processing", "rendering", "completed"]
    assert live[1].data["progress"] == 40 and live[1].data["message"] == "rendering frames"
    assert live[3].data["data"] == {"frames": 24} and live[3].data["progress"] == 100
    assert all(m.data["seq"] == m.id and m.data["job_id"] == job["id"] for m in live)


async def test_a_finished_job_streams_its_snapshot_and_ends(
    live_server: Callable[..., str], http: httpx.AsyncClient
) -> None:
    url = live_server(**SERVER_ENV)
    job = await _create(http, url)
    cancelled = await http.post(f"{url}/api/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    async with http.stream("GET", f"{url}/api/jobs/{job['id']}/events") as response:
        received = await read_until_end(sse_messages(response))
    assert [(m.event, m.id, m.data["status"]) for m in received] == [("snapshot", 2, "cancelled")]

    # Resuming after the last event of a finished job: nothing to replay, and the stream ends.
    async with http.stream(
        "GET", f"{url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "2"}
    ) as response:
        assert await read_until_end(sse_messages(response)) == []


async def test_last_event_id_replays_the_missed_events_without_gap_or_duplicate(
    live_server: Callable[..., str], http: httpx.AsyncClient
) -> None:
    url = live_server(**SERVER_ENV)
    job = await _create(http, url)
    await _put(http, url, job["id"], status="processing")
    seen: list[SSEMessage] = []
    async with http.stream("GET", f"{url}/api/jobs/{job['id']}/events") as response:
        messages = sse_messages(response)
        seen.append(await next_message(messages))  # snapshot, id 2
        for step in (10, 20):
            await _put(http, url, job["id"], progress=step)
            seen.append(await next_message(messages))
    # Disconnected: these happen while nobody listens.
    for step in (30, 40, 50):
        await _put(http, url, job["id"], progress=step, message=f"at {step}")

    async with http.stream(
        "GET", f"{url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": str(seen[-1].id)}
    ) as response:
        messages = sse_messages(response)
        for _ in range(3):
            seen.append(await next_message(messages))  # replayed from the database
        await _put(http, url, job["id"], progress=60)
        seen.append(await next_message(messages))  # live again
        await _put(http, url, job["id"], status="failed", error="out of film")
        seen.extend(await read_until_end(messages))

    assert seen[0].event == "snapshot" and seen[0].id == 2
    assert _ids(seen) == list(range(2, 10))  # contiguous, nothing twice
    assert [m.data["progress"] for m in seen[1:7]] == [10, 20, 30, 40, 50, 60]
    assert seen[3].data["message"] == "at 30"
    assert (seen[-1].event, seen[-1].data["data"]) == ("failed", {"error": "out of film"})

    # From the very beginning (Last-Event-ID 0, here as the query parameter browsers cannot
    # send as a header on a first connection): the whole history, then the end.
    async with http.stream("GET", f"{url}/api/jobs/{job['id']}/events?last_event_id=0") as response:
        history = await read_until_end(sse_messages(response))
    assert _ids(history) == list(range(1, 10))
    assert history[0].event == "created" and history[-1].event == "failed"


async def test_keep_alive_comments_while_idle(live_server: Callable[..., str], http: httpx.AsyncClient) -> None:
    url = live_server(**SERVER_ENV)
    job = await _create(http, url)
    comments = 0
    async with http.stream("GET", f"{url}/api/jobs/{job['id']}/events") as response:
        messages = sse_messages(response)
        assert (await next_message(messages)).event == "snapshot"
        async with asyncio.timeout(20):
            async for message in messages:
                assert message.comment == "keep-alive", message
                comments += 1
                if comments == 3:
                    break
        await http.post(f"{url}/api/jobs/{job['id']}/cancel")
        rest = await read_until_end(messages)
    assert [m.event for m in rest] == ["cancelled"]


async def test_unknown_job_and_bad_last_event_id_are_refused_before_streaming(
    live_server: Callable[..., str], http: httpx.AsyncClient
) -> None:
    url = live_server(**SERVER_ENV)
    missing = await http.get(f"{url}/api/jobs/{uuid.uuid4()}/events")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/json")
    assert missing.json()["error"] == "job_not_found"

    job = await _create(http, url)
    bad = await http.get(f"{url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 400 and bad.json()["field"] == "Last-Event-ID"
    negative = await http.get(f"{url}/api/events", headers={"Last-Event-ID": "-1"})
    assert negative.status_code == 400

    for path in ("wait", "events"):
        response = await http.get(f"{url}/api/jobs/{uuid.uuid4()}/{path}")
        assert response.status_code == 404


async def test_last_event_id_is_a_plain_decimal_in_range(
    live_server: Callable[..., str], http: httpx.AsyncClient
) -> None:
    url = live_server(**SERVER_ENV)
    job = await _create(http, url)
    for value in (str(2**63), str(10**30), "1_000", "+3", "1.0", "0x10", "-0"):
        for path in (f"/api/jobs/{job['id']}/events", "/api/events"):
            for name in ("Last-Event-ID", "last_event_id"):
                if name == "Last-Event-ID":
                    request = http.build_request("GET", url + path, headers={name: value})
                else:
                    request = http.build_request("GET", url + path, params={name: value})
                response = await http.send(request, stream=True)
                try:  # a stream that opened must not be read to its (endless) end
                    assert response.status_code == 400, (path, name, value)
                    body = msgspec.json.decode(await response.aread())
                finally:
                    await response.aclose()
                assert body["error"] == "bad_request" and body["field"] == name, body
    # Both are checked, even when the header (which wins) is valid.
    response = await http.get(f"{url}/api/events", params={"last_event_id": str(2**63)}, headers={"Last-Event-ID": "0"})
    assert response.status_code == 400 and response.json()["field"] == "last_event_id"


async def test_all_jobs_stream_filters_by_type_and_status_and_replays(
    live_server: Callable[..., str], http: httpx.AsyncClient
) -> None:
    url = live_server(**SERVER_ENV)
    async with (
        http.stream("GET", f"{url}/api/events?job_type=alpha") as by_type,
        http.stream("GET", f"{url}/api/events?status=cancelled&status=completed") as by_status,
        http.stream("GET", f"{url}/api/events") as everything,
    ):
        streams = [sse_messages(r) for r in (by_type, by_status, everything)]
        for stream in streams:
            # The all-jobs stream opens with a comment, so a client knows it is subscribed.
            async with asyncio.timeout(20):
                first = await anext(stream)
            assert first.comment == "connected"

        alpha = await _create(http, url, "alpha")
        beta = await _create(http, url, "beta")
        await _put(http, url, beta["id"], progress=10)
        await _put(http, url, alpha["id"], progress=20)
        await http.post(f"{url}/api/jobs/{beta['id']}/cancel")
        await _put(http, url, alpha["id"], status="completed")

        typed = [await next_message(streams[0]) for _ in range(3)]
        finished = [await next_message(streams[1]) for _ in range(2)]
        every = [await next_message(streams[2]) for _ in range(6)]

    assert [(m.data["job_type"], m.event) for m in typed] == [
        ("alpha", "created"),
        ("alpha", "progress"),
        ("alpha", "completed"),
    ]
    assert [(m.data["job_type"], m.event) for m in finished] == [("beta", "cancelled"), ("alpha", "completed")]
    ids = _ids(every)
    assert ids == sorted(ids) and len(set(ids)) == 6  # global ids, in order
    assert all(m.id == m.data["id"] for m in every)
    assert {m.data["job_id"] for m in every} == {alpha["id"], beta["id"]}

    # Global replay: everything after the second event, from the database, then live.
    async with http.stream("GET", f"{url}/api/events", headers={"Last-Event-ID": str(ids[1])}) as response:
        messages = sse_messages(response)
        replayed = [await next_message(messages) for _ in range(4)]
        gamma = await _create(http, url, "gamma")
        live = await next_message(messages)
    assert _ids(replayed) == ids[2:]
    assert (live.data["job_id"], live.event) == (gamma["id"], "created") and live.id > ids[-1]

    # Replay with a filter applies the filter to the replayed events too.
    async with http.stream(
        "GET", f"{url}/api/events?job_type=alpha", headers={"Last-Event-ID": "0"}
    ) as response:
        messages = sse_messages(response)
        replayed_alpha = [await next_message(messages) for _ in range(3)]
    assert [m.id for m in replayed_alpha] == [m.id for m in typed]


async def test_wait_returns_when_terminal_or_after_the_timeout(
    live_server: Callable[..., str], http: httpx.AsyncClient
) -> None:
    url = live_server(**SERVER_ENV)
    job = await _create(http, url)

    started = time.monotonic()
    timed_out = await http.get(f"{url}/api/jobs/{job['id']}/wait", params={"timeout": "0.5"})
    assert timed_out.status_code == 200
    assert timed_out.json()["status"] == "queued"
    assert time.monotonic() - started >= 0.5  # it did wait out the timeout

    waiter = asyncio.create_task(http.get(f"{url}/api/jobs/{job['id']}/wait", params={"timeout": "120"}))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await _put(http, url, job["id"], status="processing")  # not terminal: keeps waiting
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await _put(http, url, job["id"], status="completed", result_data={"ok": True})
    async with asyncio.timeout(60):  # well before the 120 s timeout
        finished = await waiter
    assert finished.status_code == 200
    assert finished.json()["status"] == "completed" and finished.json()["result_data"] == {"ok": True}

    # Already terminal: answered at once, even with a long timeout.
    async with asyncio.timeout(60):
        again = await http.get(f"{url}/api/jobs/{job['id']}/wait", params={"timeout": "120"})
    assert again.json()["status"] == "completed"

    for bad in ("-1", "abc", "301"):
        response = await http.get(f"{url}/api/jobs/{job['id']}/wait", params={"timeout": bad})
        assert response.status_code == 422, bad


# -- across processes ------------------------------------------------------------------------


async def _gated_job_through_a_worker_process(
    url: str, http: httpx.AsyncClient, tmp_path: Path, database_url: str, worker_env: dict[str, str]
) -> None:
    gate = tmp_path / f"gate-{uuid.uuid4().hex}"
    with worker_process(tmp_path, database_url, **worker_env) as worker:
        job = await _create(http, url, "gated", request_data={"gate": str(gate), "steps": 4})
        async with http.stream("GET", f"{url}/api/jobs/{job['id']}/events") as response:
            messages = sse_messages(response)
            received = [await next_message(messages)]
            # Wait (live) until the worker process holds the job and reported it is waiting.
            while received[-1].data.get("message") != "waiting for the gate":
                received.append(await next_message(messages))
            gate.touch()
            received.extend(await read_until_end(messages))
        assert worker.poll() is None, "the worker process died"

    ids = _ids(received)
    assert ids == list(range(ids[0], ids[-1] + 1))  # snapshot then every event, no gap
    live_after_gate = [m for m in received if m.event == "progress" and m.data["message"].startswith("step ")]
    assert [m.data["progress"] for m in live_after_gate] == [22, 45, 67, 90]
    last = received[-1]
    assert last.event == "completed"
    assert last.data["data"] == {"pid": worker.pid, "steps": 4}  # made in the worker process


async def test_worker_process_events_reach_a_server_process_without_redis(
    live_server: Callable[..., str], http: httpx.AsyncClient, tmp_path: Path, database_url: str
) -> None:
    url = live_server(**SERVER_ENV)
    health = (await http.get(f"{url}/health")).json()
    assert health["redis"] == "not configured"
    await _gated_job_through_a_worker_process(url, http, tmp_path, database_url, {})


async def test_worker_process_events_reach_a_server_process_over_redis(
    live_server: Callable[..., str], http: httpx.AsyncClient, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    url = live_server(**SERVER_ENV, REDIS_URL=redis_url)
    await _wait_for_redis_state(http, url, "ok")
    # The worker's own poll for work is off the table (30 s): the created event wakes it.
    await _gated_job_through_a_worker_process(
        url, http, tmp_path, database_url, {"REDIS_URL": redis_url, "POLL_INTERVAL": "30"}
    )


async def test_a_generation_job_in_a_worker_process_moves_through_its_statuses(
    live_server: Callable[..., str], http: httpx.AsyncClient, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """The issue's 'done when': watch a generation job move through its statuses to completed."""
    url = live_server(**SERVER_ENV, REDIS_URL=redis_url)
    with worker_process(tmp_path, database_url, REDIS_URL=redis_url):
        created = await http.post(f"{url}/api/generate/musicgen-small", json={"prompt": "rain", "duration": 10})
        assert created.status_code in (200, 201, 202), created.text
        job_id = created.json()["id"]
        # From the first event (the job may have started before we connected).
        async with http.stream("GET", f"{url}/api/jobs/{job_id}/events", headers={"Last-Event-ID": "0"}) as response:
            received = await read_until_end(sse_messages(response))
    assert _ids(received) == list(range(1, len(received) + 1))
    statuses = list(dict.fromkeys(m.data["status"] for m in received))
    assert statuses == [
        "queued",
        "processing",
        "loading_model",
        "preparing_prompt",
        "generating_audio",
        "exporting",
        "completed",
    ]
    assert received[-1].data["data"]["prompt"] == "rain"


async def _wait_for_redis_state(http: httpx.AsyncClient, url: str, state: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await http.get(f"{url}/health")
        body: dict[str, Any] = response.json()
        if body.get("redis") == state:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"redis never became {state!r}: {body}")
        await asyncio.sleep(0.1)


async def test_all_jobs_stream_sends_events_of_several_processes_in_global_order(
    live_server: Callable[..., str], http: httpx.AsyncClient, database_url: str
) -> None:
    """The global id is the resume point of a dashboard, so the stream must never send an id
    before a smaller one: a client that disconnects after the larger one would skip the
    smaller one forever. Another process's events reach the server later (here from the
    database poll) than the server's own, which it dispatches at once."""
    url = live_server(**SERVER_ENV)
    job = await _create(http, url, "local")
    async with JobQueueService.open(make_settings(database_url)) as other_process:
        remote_job = await other_process.enqueue_job("remote")
        async with http.stream("GET", f"{url}/api/events") as response:
            messages = sse_messages(response)
            async with asyncio.timeout(20):
                assert (await anext(messages)).comment == "connected"
            for step in range(1, 6):
                # Committed in this order: the remote change first, then the server's own.
                await other_process.update_job(remote_job, progress=step)
                await _put(http, url, job["id"], progress=step)
            received = [await next_message(messages) for _ in range(10)]
            ids = _ids(received)
            assert ids == list(range(ids[0], ids[0] + 10)), ids
            assert [m.data["job_type"] for m in received] == ["remote", "local"] * 5

            # Resuming after any of them replays exactly the ones after it.
            async with http.stream(
                "GET", f"{url}/api/events", headers={"Last-Event-ID": str(received[3].id)}
            ) as resumed:
                resumed_messages = sse_messages(resumed)
                replayed = [await next_message(resumed_messages) for _ in range(6)]
    assert _ids(replayed) == ids[4:]


async def test_a_client_that_goes_away_releases_its_subscription(
    live_server: Callable[..., str], http: httpx.AsyncClient
) -> None:
    url = live_server(**SERVER_ENV)
    job = await _create(http, url)
    paths = [f"/api/jobs/{job['id']}/events", f"/api/jobs/{job['id']}/events", "/api/events?job_type=x"]
    readers = []
    async with contextlib.AsyncExitStack() as streams:
        for path in paths:
            response = await streams.enter_async_context(http.stream("GET", url + path))
            readers.append(sse_messages(response))
            async with asyncio.timeout(20):
                await anext(readers[-1])  # the stream is up
        assert await _listeners(http, url) == len(paths)
    # The clients closed their connections without any further event of the job.
    deadline = time.monotonic() + 30
    while (count := await _listeners(http, url)) != 0:
        assert time.monotonic() < deadline, f"{count} subscriptions outlived their clients"
        await asyncio.sleep(0.1)


async def test_a_waiter_that_hangs_up_releases_its_subscription_at_once(
    live_server: Callable[..., str], http: httpx.AsyncClient
) -> None:
    # /wait is a plain response, which Starlette does not cancel when the client leaves: before
    # the server watched for the disconnect, the subscription stayed until the timeout (60 s).
    url = live_server(**SERVER_ENV)
    job = await _create(http, url)
    host, port = url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /api/jobs/{job['id']}/wait?timeout=60 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    deadline = time.monotonic() + 10
    while await _listeners(http, url) != 1:
        assert time.monotonic() < deadline, "the wait never subscribed"
        await asyncio.sleep(0.05)
    writer.close()
    await writer.wait_closed()
    deadline = time.monotonic() + 5
    while (count := await _listeners(http, url)) != 0:
        assert time.monotonic() < deadline, f"{count} subscription(s) outlived the waiter"
        await asyncio.sleep(0.05)


async def _listeners(http: httpx.AsyncClient, url: str) -> float:
    text = (await http.get(f"{url}/metrics")).text
    for line in text.splitlines():
        if line.startswith("jobqueue_event_listeners "):
            return float(line.split()[1])
    raise AssertionError("no jobqueue_event_listeners metric")


async def test_a_client_that_stops_reading_is_cut_off_and_resumes_without_gap(
    live_server: Callable[..., str], http: httpx.AsyncClient, database_url: str
) -> None:
    """Far more events than the socket buffers and the listener queue hold, while the client
    reads nothing: the server drops the listener (bounded memory) and ends the stream; the
    client reads what was sent, resumes with Last-Event-ID and misses nothing."""
    url = live_server(**SERVER_ENV)
    job = await _create(http, url)
    total_updates = 8_000
    received: list[SSEMessage] = []
    async with JobQueueService.open(make_settings(database_url)) as writer:
        async with http.stream("GET", f"{url}/api/jobs/{job['id']}/events") as response:
            messages = sse_messages(response)
            received.append(await next_message(messages))
            # Not reading: the server's writes back up in the socket, its queue fills.
            for start in range(0, total_updates, 500):
                await asyncio.gather(
                    *(writer.update_job(job["id"], progress=i % 101, message=f"update {i} " + "x" * 1000)
                      for i in range(start, start + 500))
                )
            await writer.update_job(job["id"], status="cancelled")
            deadline = time.monotonic() + 60
            while await _cut_offs(http, url) == 0:
                assert time.monotonic() < deadline, "the listener was never cut off"
                await asyncio.sleep(0.2)
            first_connection = await read_until_end(messages, timeout=60)
        received.extend(first_connection)
        assert received[-1].event != "cancelled"  # the stream ended early, at the cut-off
        async with http.stream(
            "GET", f"{url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": str(received[-1].id)}
        ) as response:
            received.extend(await read_until_end(sse_messages(response), timeout=60))
    assert _ids(received) == list(range(1, total_updates + 3))
    assert received[-1].event == "cancelled"


async def _cut_offs(http: httpx.AsyncClient, url: str) -> float:
    text = (await http.get(f"{url}/metrics")).text
    for line in text.splitlines():
        if line.startswith("jobqueue_events_dropped_total") and 'listener_cut_off' in line:
            return float(line.split()[-1])
    raise AssertionError("no listener cut-off counter in /metrics")
