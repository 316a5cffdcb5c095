"""A worker of a peer queue (arq or SAQ) in its own process: ``python -m benchmarks.peer_worker``.

With ``--expect N`` it prints one JSON line (first handler start, N-th completion recorded, in
epoch seconds) and exits once N jobs are done; without, it serves until terminated (latency).
Completions are counted in each library's after-job hook, which runs once the result is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

#: The same polling as the issue's table: arq at 10 ms (its default is 500 ms).
ARQ_POLL_DELAY = 0.01


class _Progress:
    def __init__(self) -> None:
        self.first = 0.0
        self.done = 0
        self.expect = 0
        self.finished = asyncio.Event()

    def started(self) -> None:
        if not self.first:
            self.first = time.time()

    def ended(self) -> None:
        self.done += 1
        if self.expect and self.done >= self.expect:
            self.finished.set()


PROGRESS = _Progress()


async def noop(ctx: Any) -> None:
    PROGRESS.started()


async def stamp(ctx: Any) -> float:
    return time.time()


async def _after(ctx: Any) -> None:
    PROGRESS.ended()


def _arq_worker(url: str, concurrency: int) -> Any:
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    return Worker(
        functions=[func(noop, name="noop"), func(stamp, name="stamp")],  # type: ignore[list-item]
        redis_settings=RedisSettings.from_dsn(url),
        max_jobs=concurrency,
        poll_delay=ARQ_POLL_DELAY,
        handle_signals=False,
        after_job_end=_after,
        keep_result=600,
    )


async def _run(system: str, url: str, concurrency: int, expect: int) -> None:
    PROGRESS.expect = expect
    if system == "arq":
        worker = _arq_worker(url, concurrency)
        task = asyncio.create_task(worker.async_run())
    else:
        from saq import Queue, Worker

        queue = Queue.from_url(url)
        saq_worker = Worker(
            queue, functions=[("noop", noop), ("stamp", stamp)], concurrency=concurrency, after_process=[_after]
        )
        task = asyncio.create_task(saq_worker.start())
    if not expect:
        await task
        return
    finished = asyncio.create_task(PROGRESS.finished.wait())
    await asyncio.wait([task, finished], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # the worker crashed: raise its error
    sys.stdout.write(json.dumps({"first": PROGRESS.first, "last": time.time(), "done": PROGRESS.done}) + "\n")
    sys.stdout.flush()
    os._exit(0)  # the measurement is taken; a graceful shutdown would only add noise


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=["arq", "saq"])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--expect", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(_run(args.system, args.redis_url, args.concurrency, args.expect))
    except ImportError:
        asyncio.run(_run(args.system, args.redis_url, args.concurrency, args.expect))


if __name__ == "__main__":
    main()
