"""HTTP enqueue: 50 keep-alive clients POST for a fixed time to

- jobqueue's ``POST /api/jobs`` (answering the whole job, and with ``Prefer: return=minimal``
  the id and status), against the same server's bare no-op JSON route (the ceiling: what
  uvicorn + Starlette cost without the database);
- ``jobqueue serve --no-worker --workers 1`` and ``--workers 2`` (the shipped command and its
  supervisor), in alternating rounds: does a second API process add throughput?
- what a user would build instead (``benchmarks/peer_http.py``): a Starlette endpoint that
  enqueues into SAQ, and one into arq, on the same Redis the peers scenario uses.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
from typing import Any

from benchmarks.common import PYTHON, Child, Context, Outcome, free_port, wait_for_http
from benchmarks.loadgen import run_load
from benchmarks.scenarios.peers import PEERS, _flush

CONNECTIONS = 50
BODY = b'{"job_type":"noop","request_data":{"n":1}}'
#: What a producer that needs only the id sends (the peers' endpoints answer no more).
MINIMAL = {"Prefer": "return=minimal"}
#: Alternating rounds of one and two API processes.
PROCESS_ROUNDS = 2


async def _load(
    ctx: Context, url: str, seconds: float, body: bytes = BODY, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A short warm-up (fills caches, opens connections), then the measured run."""
    options = {"connections": CONNECTIONS, "workdir": ctx.workdir, "headers": headers}
    await asyncio.to_thread(run_load, url, body, seconds=1, **options)
    return await asyncio.to_thread(run_load, url, body, seconds=seconds, **options)


async def _serve_processes(ctx: Context, processes: int, seconds: float, label: str) -> dict[str, Any]:
    """``jobqueue serve --no-worker --workers N`` on a fresh database, loaded on /api/jobs."""
    with ctx.databases.create(label) as db:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [
            PYTHON, "-m", "jobqueue", "serve", "--no-worker", "--workers", str(processes),
            "--database-url", db.url, "--port", str(port), "--log-level", "warning",
            "--registry", "benchmarks.handlers:registry",
        ]  # fmt: skip
        with Child(command, ctx.workdir / f"{label}.log") as server:
            wait_for_http(base + "/health", server)
            return await _load(ctx, base + "/api/jobs", seconds, headers=MINIMAL)


async def _peer(ctx: Context, system: str, seconds: float) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    await _flush(ctx.redis_url)
    command = [PYTHON, "-m", "benchmarks.peer_http", system, "--port", str(port), "--redis-url", ctx.redis_url]
    try:
        with Child(command, ctx.workdir / f"http-{system}.log") as server:
            # No route of its own to probe: a GET of the POST-only endpoint answers 405 once up.
            wait_for_http(base + "/enqueue", server)
            return await _load(ctx, base + "/enqueue", seconds, b'{"n":1}')
    finally:
        await _flush(ctx.redis_url)


def _record(outcome: Outcome, name: str, result: dict[str, Any]) -> None:
    outcome.add(f"{name} requests/s", result["rps"], "req/s")
    outcome.add(f"{name} p50", result["p50_ms"], "ms")
    outcome.add(f"{name} p99", result["p99_ms"], "ms")
    if result["errors"] or result["socket_errors"]:
        outcome.notes.append(f"{name}: {result['errors']} non-2xx, socket errors: {result['socket_errors'] or 0}")


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("http")
    seconds = 3.0 if ctx.quick else 10.0
    results: dict[str, dict[str, Any]] = {}
    # Each enqueue variant on a fresh server and database, with the no-op measured on that same
    # server first: a variant measured after another one ran on a table grown by its rows.
    for name, headers in (("enqueue", None), ("enqueue minimal", MINIMAL)):
        with ctx.databases.create(name.replace(" ", "-")) as db:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            with Child(
                [PYTHON, "-m", "benchmarks.server", "--database-url", db.url, "--port", str(port)],
                ctx.workdir / f"http-server-{name.replace(' ', '-')}.log",
            ) as server:
                wait_for_http(base + "/health", server)
                results[f"noop (before {name})"] = await _load(ctx, base + "/bench/noop", seconds)
                results[name] = await _load(ctx, base + "/api/jobs", seconds, headers=headers)
                outcome.add(f"server peak RSS ({name})", server.peak_rss_mb(), "MiB")
    for name, result in results.items():
        _record(outcome, name, result)
    outcome.add("enqueue / no-op", results["enqueue"]["rps"] / results["noop (before enqueue)"]["rps"], "ratio")
    outcome.add(
        "enqueue minimal / no-op",
        results["enqueue minimal"]["rps"] / results["noop (before enqueue minimal)"]["rps"],
        "ratio",
    )

    for system in PEERS:
        if importlib.util.find_spec(system) is None:
            outcome.notes.append(f"starlette+{system}: skipped, not installed (pip install -e '.[bench]')")
            continue
        result = await _peer(ctx, system, seconds)
        _record(outcome, f"starlette+{system} enqueue", result)
        # The peers answer the id and status only: so does jobqueue, asked with Prefer.
        outcome.add(f"enqueue / starlette+{system}", results["enqueue minimal"]["rps"] / result["rps"], "ratio")

    rates: dict[int, list[float]] = {1: [], 2: []}
    for round_ in range(ctx.scale(PROCESS_ROUNDS, 1)):
        for processes in (1, 2):
            result = await _serve_processes(ctx, processes, seconds, f"http-serve-{processes}-{round_}")
            rates[processes].append(result["rps"])
    one, two = statistics.mean(rates[1]), statistics.mean(rates[2])
    outcome.add("enqueue, serve --workers 1 requests/s", one, "req/s")
    outcome.add("enqueue, serve --workers 2 requests/s", two, "req/s")
    outcome.add("enqueue, 2 processes / 1", two / one, "ratio")
    outcome.notes.append(
        f"{CONNECTIONS} connections, {seconds:g}s each, generator {results['enqueue']['generator']} "
        f"(on the same cores); jobqueue: uvicorn uvloop+httptools (head bounded), access log off; "
        f"the peers' endpoints uvicorn defaults (uvloop+httptools). serve --workers 1: "
        f"{', '.join(f'{r:,.0f}' for r in rates[1])}; --workers 2: {', '.join(f'{r:,.0f}' for r in rates[2])} req/s"
    )
    return outcome
