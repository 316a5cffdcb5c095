"""HTTP enqueue: 50 keep-alive clients POST /api/jobs for a fixed time, against the same server's
bare no-op JSON route (the ceiling: what uvicorn + Starlette cost without the database)."""

from __future__ import annotations

import asyncio

from benchmarks.common import PYTHON, Child, Context, Outcome, free_port, wait_for_http
from benchmarks.loadgen import run_load

CONNECTIONS = 50
BODY = b'{"job_type":"noop","request_data":{"n":1}}'


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("http")
    seconds = 3.0 if ctx.quick else 10.0
    with ctx.databases.create("http") as db:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with Child(
            [PYTHON, "-m", "benchmarks.server", "--database-url", db.url, "--port", str(port)],
            ctx.workdir / "http-server.log",
        ) as server:
            wait_for_http(base + "/health", server)
            results = {}
            # The no-op first, so the enqueue run does not start on a warmed-up, grown database
            # while the ceiling ran on an empty one; a short warm-up of each fills caches.
            for name, path in (("noop", "/bench/noop"), ("enqueue", "/api/jobs")):
                await asyncio.to_thread(run_load, base + path, BODY, connections=CONNECTIONS, seconds=1, workdir=ctx.workdir)
                results[name] = await asyncio.to_thread(
                    run_load, base + path, BODY, connections=CONNECTIONS, seconds=seconds, workdir=ctx.workdir
                )
            outcome.add("server peak RSS", server.peak_rss_mb(), "MiB")
        for name, result in results.items():
            outcome.add(f"{name} requests/s", result["rps"], "req/s")
            outcome.add(f"{name} p50", result["p50_ms"], "ms")
            outcome.add(f"{name} p99", result["p99_ms"], "ms")
            if result["errors"] or result["socket_errors"]:
                outcome.notes.append(f"{name}: {result['errors']} non-2xx, socket errors: {result['socket_errors'] or 0}")
        outcome.add("enqueue / no-op", results["enqueue"]["rps"] / results["noop"]["rps"], "ratio")
        outcome.notes.append(
            f"{CONNECTIONS} connections, {seconds:g}s each, generator {results['enqueue']['generator']}, "
            "uvicorn uvloop+httptools, access log off"
        )
        return outcome
