"""N SSE listeners on one job in one process (``python -m benchmarks.sse_listeners``).

Each reads ``GET /api/jobs/{id}/events`` over a raw keep-alive socket, de-chunks the body,
and for every ``data:`` line carrying a ``"progress"`` event records when it arrived and, when
the event carries the sender's ``bench <i> <epoch>`` message, its delivery latency. Prints one
JSON line with the totals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MARK = "bench "
MARK_BYTES = MARK.encode()


def _find_mark(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.startswith(MARK) else None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = _find_mark(item)
            if found:
                return found
    return None


class Listener:
    def __init__(self) -> None:
        self.delivered = 0
        self.latencies: list[float] = []
        self.last = 0.0
        self.status = 0


async def _listen(url: str, listener: Listener, expect: int, idle: float, ready: asyncio.Event, connected: list[int], total: int) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    listener.status = int(head.split(b" ", 2)[1])
    connected.append(1)
    if len(connected) == total:
        ready.set()
    if listener.status != 200:
        writer.close()
        return
    chunked = b"transfer-encoding: chunked" in head.lower()
    buffer = b""
    try:
        while listener.delivered < expect:
            if chunked:
                size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), idle)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    return
                data = await reader.readexactly(size + 2)
                buffer += data[:-2]
            else:
                data = await asyncio.wait_for(reader.read(65536), idle)
                if not data:
                    return
                buffer += data
            *lines, buffer = buffer.split(b"\n")
            now = time.time()
            for line in lines:
                # Cheap byte checks first: this process parses 100x the events the server sends.
                if not line.startswith(b"data:") or b'"progress"' not in line or MARK_BYTES not in line:
                    continue  # the job's other events (created, completed) are not the fan-out
                try:
                    event = json.loads(line[5:])
                except ValueError:
                    continue
                mark = _find_mark(event)
                if mark is None:
                    continue
                listener.delivered += 1
                listener.last = now
                listener.latencies.append(now - float(mark.split()[2]))
    except TimeoutError:
        return
    finally:
        writer.close()


async def _main(url: str, count: int, expect: int, idle: float, ready_file: Path) -> dict[str, Any]:
    listeners = [Listener() for _ in range(count)]
    ready = asyncio.Event()
    connected: list[int] = []
    tasks = [asyncio.create_task(_listen(url, lst, expect, idle, ready, connected, count)) for lst in listeners]
    await asyncio.wait_for(ready.wait(), 30)
    ready_file.write_text(json.dumps([lst.status for lst in listeners]))
    await asyncio.gather(*tasks)
    latencies = sorted(x for lst in listeners for x in lst.latencies)
    return {
        "statuses": sorted({lst.status for lst in listeners}),
        "delivered": sum(lst.delivered for lst in listeners),
        "last": max((lst.last for lst in listeners), default=0.0),
        "latencies": latencies,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(_main(args.url, args.listeners, args.expect, args.idle, args.ready_file))
    except ImportError:
        result = asyncio.run(_main(args.url, args.listeners, args.expect, args.idle, args.ready_file))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
