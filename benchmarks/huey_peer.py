"""huey on its SQLite storage, the closest peer to jobqueue's default: ``python -m benchmarks.huey_peer``.

``enqueue`` queues N no-op tasks from one thread (huey's producer API is synchronous) and prints
the rate; ``worker`` runs huey's consumer (thread workers) until N tasks completed and prints one
JSON line (first task start, N-th completion, epoch seconds), as ``peer_worker`` does for arq
and SAQ. Durability ``default`` is huey's own: WAL and SQLite's default ``synchronous`` (FULL:
an fsync per commit); ``normal`` is jobqueue's setting (WAL + ``synchronous=NORMAL``), which
huey's options do not offer (``fsync`` is FULL or OFF), so its connection setup is extended here.
A huey task's only durable writes are its enqueue and its dequeue (the row is deleted when a
worker takes it; a no-op's ``None`` result is not stored).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
from typing import Any

#: Thread workers of the consumer: the issue's measurement of huey used 10.
WORKERS = 10
DURABILITY = ("default", "normal")


def make_huey(path: str, durability: str) -> Any:
    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    class NormalSync(SqliteStorage):  # type: ignore[misc]
        def _create_connection(self) -> sqlite3.Connection:
            conn = super()._create_connection()
            conn.execute("PRAGMA synchronous = NORMAL")
            return conn

    class Huey(SqliteHuey):  # type: ignore[misc]
        storage_class = NormalSync if durability == "normal" else SqliteStorage

    huey = Huey("bench", filename=path)

    @huey.task(name="noop")
    def noop() -> None:
        return None

    return huey, noop


def enqueue(path: str, durability: str, count: int) -> float:
    _, noop = make_huey(path, durability)
    started = time.perf_counter()
    for _ in range(count):
        noop()
    return count / (time.perf_counter() - started)


def work(path: str, durability: str, count: int, workers: int) -> None:
    from huey.signals import SIGNAL_COMPLETE, SIGNAL_EXECUTING

    huey, _ = make_huey(path, durability)
    lock = threading.Lock()
    state = {"first": 0.0, "done": 0}

    @huey.signal(SIGNAL_EXECUTING)
    def executing(signal: str, task: Any) -> None:
        if not state["first"]:
            state["first"] = time.time()

    @huey.signal(SIGNAL_COMPLETE)
    def complete(signal: str, task: Any) -> None:
        with lock:
            state["done"] += 1
            if state["done"] == count:
                sys.stdout.write(json.dumps({"first": state["first"], "last": time.time(), "done": count}) + "\n")
                sys.stdout.flush()
                os._exit(0)  # the measurement is taken; a graceful shutdown would only add noise

    # Polling no slower than jobqueue's cross-process poll: huey's default backs off to 10 s.
    consumer = huey.create_consumer(
        workers=workers, worker_type="thread", periodic=False, initial_delay=0.01, max_delay=0.1
    )
    consumer.run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["enqueue", "worker"])
    parser.add_argument("--path", required=True)
    parser.add_argument("--durability", choices=DURABILITY, default="default")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args()
    if args.action == "enqueue":
        sys.stdout.write(json.dumps({"rate": enqueue(args.path, args.durability, args.count)}) + "\n")
    else:
        work(args.path, args.durability, args.count, args.workers)


if __name__ == "__main__":
    main()
