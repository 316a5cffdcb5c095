"""The SQLite backend's peers in the same run: arq and SAQ on the local Redis (a dedicated db,
flushed before each step: only that db), the same no-op workload, the same concurrency (64
running jobs, 50 enqueuing tasks), their workers in their own process as jobqueue's is; and huey
on its SQLite storage (``benchmarks/huey_peer.py``), the closest peer to jobqueue's default, at
its own durability and at jobqueue's. The PostgreSQL backend's peers are in ``pg_peers``."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from typing import Any

from benchmarks.common import (
    PYTHON,
    Child,
    Context,
    Outcome,
    PeakSampler,
    percentile,
    read_json_line,
)
from benchmarks.scenarios.latency import CROSS_PROCESS_POLL, measure, observe_jobqueue
from benchmarks.scenarios.processing import CONCURRENCY, PRODUCERS, worker_command
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings

#: Idle-latency rounds alternating between the peer and jobqueue (jobs per system / rounds each).
LATENCY_ROUNDS = 10

PEERS = ("arq", "saq")
#: huey's runs: its default durability (synchronous FULL) and jobqueue's (WAL + NORMAL).
HUEY = {"huey": "default", "huey-normal": "normal"}


async def _flush(url: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


class _Arq:
    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: Any = None

    async def __aenter__(self) -> _Arq:
        from arq import create_pool
        from arq.connections import RedisSettings

        self.pool = await create_pool(RedisSettings.from_dsn(self.url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.aclose()

    async def enqueue(self, name: str) -> Any:
        return await self.pool.enqueue_job(name)

    async def observe(self, job: Any) -> float:
        return float(await job.result(timeout=30, poll_delay=0.0002))


class _Saq:
    def __init__(self, url: str) -> None:
        from saq import Queue

        self.queue = Queue.from_url(url)

    async def __aenter__(self) -> _Saq:
        await self.queue.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.queue.disconnect()

    async def enqueue(self, name: str) -> Any:
        return await self.queue.enqueue(name)

    async def observe(self, job: Any) -> float:
        deadline = time.monotonic() + 30
        while True:
            try:
                # Pub/sub, as SAQ's own clients wait; a completion that lands between SAQ's status
                # read and its subscribe is never notified, so look again after a short wait.
                await job.refresh(until_complete=0.1)
                return float(job.result)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise


def _client(system: str, url: str) -> Any:
    return _Arq(url) if system == "arq" else _Saq(url)


async def _enqueue_many(client: Any, count: int) -> float:
    per_task, extra = divmod(count, PRODUCERS)

    async def producer(n: int) -> None:
        for _ in range(n):
            await client.enqueue("noop")

    started = time.perf_counter()
    await asyncio.gather(*(producer(per_task + (i < extra)) for i in range(PRODUCERS)))
    return count / (time.perf_counter() - started)


async def run_peer(ctx: Context, system: str, outcome: Outcome) -> None:
    # Fewer jobs than jobqueue's 50,000: at their ~1.5k jobs/s the rate is steady long before,
    # and 50,000 each would take the suite past ten minutes.
    count = ctx.scale(20_000, 5_000)
    url = ctx.redis_url
    worker_cmd = [
        PYTHON, "-m", "benchmarks.peer_worker", system, "--redis-url", url,
        "--concurrency", str(CONCURRENCY[ctx.backend]),
    ]

    await _flush(url)
    async with _client(system, url) as client:
        outcome.add(f"{system} enqueue", await _enqueue_many(client, count), "jobs/s")
    with Child([*worker_cmd, "--expect", str(count)], ctx.workdir / f"{system}-worker.log") as worker:
        with PeakSampler(worker) as peak:
            await asyncio.to_thread(worker.proc.wait, 600)
    result = read_json_line(worker.log_path.read_text())
    outcome.add(f"{system} process", result["done"] / (result["last"] - result["first"]), "jobs/s")
    outcome.add(f"{system} worker peak RSS", peak.peak, "MiB")

    await _flush(url)
    starts, dones, our_dones = await _interleaved_latency(ctx, system, worker_cmd)
    outcome.add(f"{system} enqueue->start p50", percentile(starts, 50) * 1000, "ms")
    outcome.add(f"{system} enqueue->done p50", percentile(dones, 50) * 1000, "ms")
    outcome.add(f"{system} enqueue->done p99", percentile(dones, 99) * 1000, "ms")
    outcome.add(f"jobqueue enqueue->done p50 (alternating with {system})", percentile(our_dones, 50) * 1000, "ms")
    await _flush(url)


async def _interleaved_latency(
    ctx: Context, system: str, worker_cmd: list[str]
) -> tuple[list[float], list[float], list[float]]:
    """The peer's idle latency, in rounds alternating with jobqueue's (a ``jobqueue worker`` in
    another process, as in the latency scenario), so both are measured on the same machine
    state: figures taken minutes apart drifted by up to 30% on this shared machine.

    Returns the peer's enqueue->start and enqueue->done latencies and jobqueue's
    enqueue->done latencies, in seconds.
    """
    count = ctx.scale(500, 100)
    per_round = max(1, count // LATENCY_ROUNDS)
    starts: list[float] = []
    dones: list[float] = []
    our_dones: list[float] = []
    with ctx.databases.create(f"latency-vs-{system}") as db:
        settings = Settings(database_url=db.url, run_worker=False, redis_url=ctx.redis_url)
        our_cmd = worker_command(
            db.url, CONCURRENCY[ctx.backend], "--poll-interval", str(CROSS_PROCESS_POLL), "--redis-url", ctx.redis_url
        )
        async with JobQueueService.open(settings) as service:
            with (
                Child(worker_cmd, ctx.workdir / f"{system}-latency-worker.log"),
                Child(our_cmd, ctx.workdir / f"jobqueue-vs-{system}-latency-worker.log"),
            ):
                async with _client(system, ctx.redis_url) as client:
                    await client.observe(await client.enqueue("stamp"))  # both workers are up
                    await observe_jobqueue(service, await service.enqueue_job("stamp"))
                    for _ in range(LATENCY_ROUNDS):
                        s, d = await measure(lambda: client.enqueue("stamp"), client.observe, per_round)
                        starts += s
                        dones += d
                        _, d = await measure(
                            lambda: service.enqueue_job("stamp"),
                            lambda job_id: observe_jobqueue(service, job_id),
                            per_round,
                        )
                        our_dones += d
    return starts, dones, our_dones


async def run_huey(ctx: Context, name: str, durability: str, outcome: Outcome) -> None:
    # The measurement of huey: 10,000 tasks, 10 thread workers.
    count = ctx.scale(10_000, 2_000)
    path = ctx.workdir / f"{name}.db"
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    command = [PYTHON, "-m", "benchmarks.huey_peer", "--path", str(path), "--durability", durability, "--count", str(count)]
    with Child([*command[:3], "enqueue", *command[3:]], ctx.workdir / f"{name}-enqueue.log") as producer:
        await asyncio.to_thread(producer.proc.wait, 600)
    outcome.add(f"{name} enqueue", read_json_line(producer.log_path.read_text())["rate"], "jobs/s")
    with Child([*command[:3], "worker", *command[3:]], ctx.workdir / f"{name}-worker.log") as worker:
        with PeakSampler(worker) as peak:
            await asyncio.to_thread(worker.proc.wait, 600)
    result = read_json_line(worker.log_path.read_text())
    outcome.add(f"{name} process", result["done"] / (result["last"] - result["first"]), "jobs/s")
    outcome.add(f"{name} worker peak RSS", peak.peak, "MiB")


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("peers")
    if importlib.util.find_spec("huey") is None:
        outcome.notes.append("huey: skipped, not installed (pip install -e '.[bench]')")
    else:
        for name, durability in HUEY.items():
            try:
                await run_huey(ctx, name, durability, outcome)
            except Exception as exc:
                outcome.notes.append(f"{name}: failed: {type(exc).__name__}: {exc}")
        outcome.notes.append(
            f"huey: SQLite storage, WAL, {ctx.scale(10_000, 2_000)} tasks enqueued from one thread, "
            "10 thread workers; huey = its default synchronous (FULL), huey-normal = synchronous NORMAL "
            "(jobqueue's); a huey task is deleted when taken and a None result is not stored"
        )
    missing = [p for p in PEERS if importlib.util.find_spec(p) is None]
    for system in PEERS:
        if system in missing:
            outcome.notes.append(f"{system}: skipped, not installed (pip install -e '.[bench]')")
            continue
        try:
            await run_peer(ctx, system, outcome)
        except Exception as exc:  # keep the other peer's figures and say what broke
            outcome.notes.append(f"{system}: failed: {type(exc).__name__}: {exc}")
    if len(missing) == len(PEERS):
        outcome.skipped = "neither arq nor saq is installed (pip install -e '.[bench]')"
    outcome.notes.append(f"Redis {ctx.redis_url}; arq polls every 10 ms, SAQ blocks on Redis; uvloop in both")
    return outcome
