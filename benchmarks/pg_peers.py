"""The PostgreSQL peers, procrastinate 3 and pgqueuer 1, through their documented public APIs:
installing their schema, enqueuing from many tasks, and a worker process
(``python -m benchmarks.pg_peers SYSTEM DSN --expect N``).

The worker runs until the queue is empty with each library's own "drain" mode (procrastinate
``run_worker_async(wait=False)``, pgqueuer ``run(mode=drain)``), then prints one JSON line: the
first handler start and the moment the library returned (every outcome written), in epoch
seconds, and how many handlers ran. Each side gets the same pool size as jobqueue's default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

SYSTEMS = ("procrastinate", "pgqueuer")
#: Connections of each side's pool: jobqueue's default ``DATABASE_POOL_SIZE``.
POOL_SIZE = 10
#: pgqueuer fetches this many jobs per dequeue (its default); it requires a concurrency of at
#: least twice the batch.
PGQUEUER_BATCH = 10
#: Jobs not finished successfully, in each library's own tables (the benchmark's check after a
#: run; pgqueuer deletes a finished job from its queue table).
UNFINISHED_SQL = {
    "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'",
    "pgqueuer": "SELECT count(*) FROM pgqueuer",
}


def install_schema(system: str, dsn: str) -> None:
    """The peer's schema, installed by the peer's own tool, on an empty database."""
    if system == "procrastinate":
        asyncio.run(_procrastinate_schema(dsn))
    else:
        subprocess.run(
            [sys.executable, "-m", "pgqueuer", "--pg-dsn", dsn, "install"], check=True, capture_output=True
        )


async def _procrastinate_schema(dsn: str) -> None:
    app = _procrastinate_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


def _procrastinate_app(dsn: str) -> Any:
    import procrastinate

    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn, max_size=POOL_SIZE))


@asynccontextmanager
async def enqueuer(system: str, dsn: str) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """A function that enqueues one no-op job (safe to call from many tasks at once)."""
    if system == "procrastinate":
        app = _procrastinate_app(dsn)
        async with app.open_async():
            deferrer = app.configure_task("noop")
            yield deferrer.defer_async
        return
    import asyncpg
    from pgqueuer import Queries

    pool = await asyncpg.create_pool(dsn, max_size=POOL_SIZE)
    try:
        queries = Queries.from_asyncpg_pool(pool)
        yield lambda: queries.enqueue("noop", None)
    finally:
        await pool.close()


class _Progress:
    def __init__(self) -> None:
        self.first = 0.0
        self.ran = 0

    def started(self) -> None:
        if not self.first:
            self.first = time.time()
        self.ran += 1


async def _work(system: str, dsn: str, concurrency: int) -> dict[str, float]:
    progress = _Progress()
    if system == "procrastinate":
        app = _procrastinate_app(dsn)

        @app.task(name="noop")
        async def noop() -> None:
            progress.started()

        async with app.open_async():
            await app.run_worker_async(concurrency=concurrency, wait=False, install_signal_handlers=False)
    else:
        import asyncpg
        from pgqueuer import PgQueuer
        from pgqueuer.models import Job
        from pgqueuer.types import QueueExecutionMode

        pool = await asyncpg.create_pool(dsn, max_size=POOL_SIZE)
        try:
            pgq = PgQueuer.from_asyncpg_pool(pool)

            @pgq.entrypoint("noop")
            async def noop_job(job: Job) -> None:
                progress.started()

            await pgq.run(batch_size=PGQUEUER_BATCH, max_concurrent_tasks=concurrency, mode=QueueExecutionMode.drain)
        finally:
            await pool.close()
    return {"first": progress.first, "last": time.time(), "ran": progress.ran}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_peers")
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("dsn")
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(_work(args.system, args.dsn, args.concurrency))
    except ImportError:
        result = asyncio.run(_work(args.system, args.dsn, args.concurrency))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
