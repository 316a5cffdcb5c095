"""The API under many idle event listeners (``python -m benchmarks.many_listeners``).

Starts ``jobqueue serve`` (SQLite, no worker), opens ``--listeners`` streams on ``GET /api/events``
from a separate process (raw sockets, counting the events each receives), then enqueues over
HTTP for ``--seconds`` with ``--concurrency`` clients. Prints one JSON line per listener count:
enqueues/s, enqueue p50/p99, and events delivered per second (over all listeners).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _raise_file_limit() -> None:
    """Each listener is a socket on both sides; the default soft limit (1024) is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the listeners' process ---------------------------------------------------------------------


async def _listen(host: str, port: int, counts: list[int], index: int, connected: asyncio.Event, opened: list[int], total: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status:
        raise SystemExit(f"listener {index} refused: {status!r}")
    opened.append(1)
    if len(opened) == total:
        connected.set()
    while data := await reader.read(65536):
        counts[index] += data.count(b"\nevent: ")


async def _listeners(host: str, port: int, total: int) -> None:
    counts = [0] * total
    connected = asyncio.Event()
    opened: list[int] = []
    tasks = [asyncio.create_task(_listen(host, port, counts, i, connected, opened, total)) for i in range(total)]
    await asyncio.wait_for(connected.wait(), 120)
    print("ready", flush=True)
    # One line on stdin asks for the totals; the parent then kills this process.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(json.dumps({"delivered": sum(counts)}), flush=True)
    for task in tasks:
        task.cancel()


# -- the enqueuing side -------------------------------------------------------------------------


async def _enqueue(url: str, seconds: float, concurrency: int) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                response = await http.post("/api/jobs", json={"job_type": "bench", "request_data": {"n": 1}})
                latencies.append(time.perf_counter() - start)
                assert response.status_code == 201, response.text

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(listeners: int, seconds: float, concurrency: int) -> dict[str, Any]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{folder}/jobs.db",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "RUN_WORKER": "false",
            "MAX_STREAMS": str(max(listeners, 1) + 16),
            "MAX_STREAMS_PER_CLIENT": str(max(listeners, 1) + 16),
        }
        server = subprocess.Popen([sys.executable, "-m", "jobqueue", "serve", "--log-level", "warning"], env=env, cwd=ROOT)
        listening: subprocess.Popen[str] | None = None
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + "/health", timeout=1)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "server did not start"
                    time.sleep(0.1)
            if listeners:
                listening = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.many_listeners", "--listen", str(port), "--listeners", str(listeners)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                )  # fmt: skip
                assert listening.stdout is not None and listening.stdin is not None
                assert listening.stdout.readline().strip() == "ready"
            started = time.perf_counter()
            latencies = asyncio.run(_enqueue(url, seconds, concurrency))
            elapsed = time.perf_counter() - started
            delivered = 0
            if listening is not None:
                time.sleep(1.0)  # the events still on their way
                assert listening.stdin is not None and listening.stdout is not None
                listening.stdin.write("\n")
                listening.stdin.flush()
                delivered = json.loads(listening.stdout.readline())["delivered"]
        finally:
            if listening is not None:
                listening.kill()
                listening.wait()
            server.terminate()
            server.wait(30)
    return {
        "listeners": listeners,
        "enqueues_per_s": round(len(latencies) / elapsed, 1),
        "enqueue_p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "enqueue_p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "events_delivered_per_s": round(delivered / (elapsed + 1.0), 1),
        "delivered_share": round(delivered / (len(latencies) * listeners), 3) if listeners else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listeners", type=int, nargs="+", default=[0, 2000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--listen", type=int, help=argparse.SUPPRESS)  # the listeners' process: a port
    args = parser.parse_args()
    _raise_file_limit()
    if args.listen is not None:
        asyncio.run(_listeners("127.0.0.1", args.listen, args.listeners[0]))
        return
    for count in args.listeners:
        sys.stdout.write(json.dumps(run(count, args.seconds, args.concurrency)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
