"""Redis stopped in the middle of work and started again, on a Redis server this test owns.

Redis is only the fast path: while it is down, enqueue, claim, progress and completion go on,
``/health`` reports Redis as degraded (still 200), stream listeners get their events from the
database poll, and once Redis is back the processes reconnect by themselves. Nothing is lost.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import IN_CI, free_port
from tests.event_handlers import SSEMessage, next_message, read_until_end, sse_messages, worker_process
from tests.helpers import stored_events

REDIS_SERVER = shutil.which("redis-server")


class RedisProcess:
    """A throwaway redis-server on its own port, without persistence, that can be killed and
    started again on the same port."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        with open(self.tmp_path / f"redis-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.tmp_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of the test's own (like ``redis_url``: required in CI, else skipped)."""
    if REDIS_SERVER is None:
        if IN_CI:
            pytest.fail("redis-server is required in CI for the Redis outage tests")
        pytest.skip("redis-server is not installed")
    server = RedisProcess(tmp_path)
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as client:
        yield client


async def _health_until(http: httpx.AsyncClient, url: str, redis_state: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        response = await http.get(f"{url}/health")
        # Redis is optional: its state never makes the service unhealthy.
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] == "ok"
        if body["redis"] == redis_state:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"/health never reported redis {redis_state!r}: {body}")
        await asyncio.sleep(0.1)


async def _gated_job(http: httpx.AsyncClient, url: str, gate: Path, steps: int = 3) -> str:
    response = await http.post(
        f"{url}/api/jobs", json={"job_type": "gated", "request_data": {"gate": str(gate), "steps": steps}}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


async def _wait_status(http: httpx.AsyncClient, url: str, job_id: str, status: str) -> dict[str, Any]:
    response = await http.get(f"{url}/api/jobs/{job_id}/wait", params={"timeout": "60"})
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    return body


def _stored_seqs(database_url: str) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = {}
    for row in stored_events(database_url):
        seqs.setdefault(row["job_id"], []).append(row["seq"])
    return seqs


async def test_redis_killed_mid_run_and_restarted(
    live_server: Callable[..., str],
    http: httpx.AsyncClient,
    tmp_path: Path,
    database_url: str,
    own_redis: RedisProcess,
) -> None:
    own_redis.start()
    env = {"REDIS_URL": own_redis.url}
    url = live_server(RUN_WORKER="false", SSE_KEEPALIVE="0.2", **env)
    await _health_until(http, url, "ok")
    gates = {name: tmp_path / f"gate-{name}-{uuid.uuid4().hex}" for name in ("a", "b", "c")}
    all_events: list[SSEMessage] = []

    with worker_process(tmp_path, database_url, **env) as worker:
        async with http.stream("GET", f"{url}/api/events") as dashboard:
            board = sse_messages(dashboard)
            assert (await anext(board)).comment == "connected"

            job_a = await _gated_job(http, url, gates["a"])
            async with http.stream("GET", f"{url}/api/jobs/{job_a}/events") as response:
                messages = sse_messages(response)
                received_a = [await next_message(messages)]
                while received_a[-1].data.get("message") != "waiting for the gate":
                    received_a.append(await next_message(messages))

                # Redis dies while the job runs in the worker process and a client listens.
                own_redis.kill()
                await _health_until(http, url, "degraded")

                # Progress and completion made in the worker process still reach the client.
                gates["a"].touch()
                received_a.extend(await read_until_end(messages))

            # Enqueue and claim keep working while Redis is down.
            gates["b"].touch()
            job_b = await _gated_job(http, url, gates["b"], steps=2)
            await _wait_status(http, url, job_b, "completed")

            # Redis comes back on the same port: everyone reconnects, nothing is restarted.
            own_redis.start()
            await _health_until(http, url, "ok")
            gates["c"].touch()
            job_c = await _gated_job(http, url, gates["c"], steps=2)
            await _wait_status(http, url, job_c, "completed")

            # The dashboard saw every event of the three jobs (the last one is c's completion).
            while not all_events or (all_events[-1].data["job_id"], all_events[-1].event) != (job_c, "completed"):
                all_events.append(await next_message(board))
        assert worker.poll() is None, "the worker process died"

    assert received_a[-1].event == "completed"
    ids_a = [m.id for m in received_a]
    assert ids_a == list(range(ids_a[0], ids_a[-1] + 1))
    assert [m.data["progress"] for m in received_a if m.event == "progress"][-3:] == [30, 60, 90]

    stored = _stored_seqs(database_url)
    for job_id in (job_a, job_b, job_c):
        seen = [m.data["seq"] for m in all_events if m.data["job_id"] == job_id]
        assert seen == stored[job_id] == list(range(1, len(seen) + 1)), job_id
    global_ids = [m.id for m in all_events]
    assert len(set(global_ids)) == len(global_ids)  # each event once


async def test_redis_down_at_start_then_up(
    live_server: Callable[..., str],
    http: httpx.AsyncClient,
    tmp_path: Path,
    database_url: str,
    own_redis: RedisProcess,
) -> None:
    env = {"REDIS_URL": own_redis.url}  # nothing listens on that port yet
    url = live_server(RUN_WORKER="false", **env)
    await _health_until(http, url, "degraded")
    with worker_process(tmp_path, database_url, **env):
        gate = tmp_path / "gate-open"
        gate.touch()
        job = await _gated_job(http, url, gate, steps=1)
        await _wait_status(http, url, job, "completed")

        own_redis.start()
        await _health_until(http, url, "ok")
        job = await _gated_job(http, url, gate, steps=1)
        async with http.stream(
            "GET", f"{url}/api/jobs/{job}/events", headers={"Last-Event-ID": "0"}
        ) as response:
            received = await read_until_end(sse_messages(response))
    assert [m.id for m in received] == list(range(1, len(received) + 1))
    assert received[0].event == "created" and received[-1].event == "completed"


async def test_a_frozen_redis_is_reported_degraded_and_work_goes_on(
    own_redis: RedisProcess, live_server: Callable[..., str]
) -> None:
    """SIGSTOP keeps Redis's sockets open but silent: only the liveness ping can notice it."""
    import signal

    own_redis.start()
    base = live_server(REDIS_URL=own_redis.url)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def redis_state() -> str:
            return (await client.get("/health")).json()["redis"]

        async def wait_for_state(state: str) -> None:
            deadline = time.monotonic() + 30
            while (current := await redis_state()) != state:
                assert time.monotonic() < deadline, f"redis stayed {current!r}, expected {state!r}"
                await asyncio.sleep(0.2)

        await wait_for_state("ok")
        assert own_redis.proc is not None
        own_redis.proc.send_signal(signal.SIGSTOP)
        try:
            await wait_for_state("degraded")
            # The in-process pool still runs jobs while Redis is frozen.
            created = await client.post("/api/generate", json={"prompt": "frozen", "duration": 2})
            assert created.status_code == 201
            done = await client.get(f"/api/jobs/{created.json()['id']}/wait", params={"timeout": 30})
            assert done.json()["status"] == "completed"
        finally:
            own_redis.proc.send_signal(signal.SIGCONT)
        await wait_for_state("ok")
