"""HTTP load: ``wrk`` when installed, else a raw asyncio HTTP/1.1 keep-alive client.

Both run in their own process (``python -m benchmarks.loadgen`` prints one JSON line), so the
generator competes with the server for the 2 cores only as much as a real client would. The
Python client sends pre-built request bytes and parses only the status line and Content-Length:
an httpx client would cost more CPU per request than the server under test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import PYTHON, child_env, percentile

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def run_load(
    url: str, body: bytes, *, connections: int, seconds: float, workdir: Path, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Drive ``url`` with POSTs of ``body`` (and ``headers``) from ``connections`` keep-alive connections."""
    headers = headers or {}
    if shutil.which("wrk"):
        return _run_wrk(url, body, connections=connections, seconds=seconds, workdir=workdir, headers=headers)
    out = subprocess.run(
        [PYTHON, "-m", "benchmarks.loadgen", url, "--body", body.decode(),
         "--connections", str(connections), "--seconds", str(seconds),
         *(f"--header={name}: {value}" for name, value in headers.items())],
        env=child_env(), capture_output=True, text=True, check=True, timeout=seconds + 60,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _run_wrk(
    url: str, body: bytes, *, connections: int, seconds: float, workdir: Path, headers: dict[str, str]
) -> dict[str, Any]:
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        + "".join(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n" for name, value in headers.items())
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    dist = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)", out, flags=re.MULTILINE))
    return {
        "generator": "wrk",
        "requests": total,
        "rps": rps,
        "p50_ms": _ms(dist["50"]),
        "p99_ms": _ms(dist["99"]),
        "errors": int(bad.group(1)) if bad else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


# -- the Python generator (the child process) -------------------------------------------------------


async def _connection(host: str, port: int, request: bytes, stop_at: float, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    try:
        while clock() < stop_at:
            started = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            if length:
                await reader.readexactly(length)
            latencies.append(clock() - started)
            if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.1 3")):
                errors.append(1)
    finally:
        writer.close()


async def _generate(url: str, body: bytes, connections: int, seconds: float, headers: list[str]) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        + "".join(f"{header}\r\n" for header in headers)
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_connection(host, port, request, stop_at, latencies, errors) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {
        "generator": "python-asyncio",
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": len(errors),
        "socket_errors": "",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--body", required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(_generate(args.url, args.body.encode(), args.connections, args.seconds, args.header))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
