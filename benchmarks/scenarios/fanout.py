"""Progress fan-out: 100 SSE listeners on one job (in their own process), 1,000 progress updates
sent by the job's holder over HTTP; delivered events/s and delivery latency."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from benchmarks.common import (
    PYTHON,
    Child,
    Context,
    Outcome,
    child_env,
    free_port,
    percentile,
    read_json_line,
    wait_for_http,
)

LISTENERS = 100


async def _endpoint_status(client: httpx.AsyncClient, url: str) -> int:
    async with client.stream("GET", url, headers={"accept": "text/event-stream"}) as response:
        return response.status_code


async def run(ctx: Context) -> Outcome:
    outcome = Outcome("fanout")
    updates = ctx.scale(1_000, 200)
    with ctx.databases.create("fanout") as db:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with Child(
            [PYTHON, "-m", "benchmarks.server", "--database-url", db.url, "--port", str(port),
             "--redis-url", ctx.redis_url],
            ctx.workdir / "fanout-server.log",
            # Every listener comes from this one address: the default per-client cap (64 streams)
            # would refuse a third of them with 429, and the share delivered would measure that.
            env=child_env(MAX_STREAMS_PER_CLIENT=str(LISTENERS + 16)),
        ) as server:
            wait_for_http(base + "/health", server)
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                job = (await client.post("/api/jobs", json={"job_type": "fanout"})).json()
                events_url = f"{base}/api/jobs/{job['id']}/events"
                status = await _endpoint_status(client, events_url)
                if status != 200:
                    outcome.skipped = f"GET /api/jobs/{{id}}/events answered {status}: the SSE endpoint is not there yet"
                    return outcome
                claim = (await client.post("/api/workers/claim", json={"worker_id": "bench", "job_types": ["fanout"]})).json()
                token = claim["jobs"][0]["claim_token"]
                ready = ctx.workdir / "fanout-ready.json"
                ready.unlink(missing_ok=True)
                listeners = Child(
                    [PYTHON, "-m", "benchmarks.sse_listeners", events_url, "--listeners", str(LISTENERS),
                     "--expect", str(updates), "--ready-file", str(ready)],
                    ctx.workdir / "fanout-listeners.log",
                )
                with listeners:
                    deadline = time.monotonic() + 30
                    while not ready.exists():
                        if time.monotonic() > deadline or not listeners.alive():
                            raise RuntimeError(f"SSE listeners did not connect:\n{listeners.tail()}")
                        await asyncio.sleep(0.05)
                    refused = [status for status in json.loads(ready.read_text()) if status != 200]
                    if refused:
                        statuses = sorted(set(refused))
                        raise RuntimeError(f"{len(refused)} of {LISTENERS} SSE listeners were refused: {statuses}")
                    first_send = time.time()
                    for i in range(updates):
                        response = await client.post(
                            f"/api/jobs/{job['id']}/progress",
                            json={"claim_token": token, "progress": i % 100, "message": f"bench {i} {time.time():.6f}"},
                        )
                        response.raise_for_status()
                    sent = time.time()
                    await client.post(f"/api/jobs/{job['id']}/complete", json={"claim_token": token})
                    server_peak = server.peak_rss_mb()
                    await asyncio.to_thread(listeners.proc.wait, 60)
                    result = read_json_line(listeners.log_path.read_text())
        expected = LISTENERS * updates
        delivered = result["delivered"]
        outcome.add("updates sent", updates / (sent - first_send), "updates/s")
        outcome.add("delivered", delivered / max(result["last"] - first_send, 1e-9), "events/s")
        outcome.add("delivered share", delivered / expected, "ratio")
        outcome.add("delivery p50", percentile(result["latencies"], 50) * 1000, "ms")
        outcome.add("delivery p99", percentile(result["latencies"], 99) * 1000, "ms")
        outcome.add("server peak RSS", server_peak, "MiB")
        outcome.notes.append(
            f"{LISTENERS} listeners x {updates} updates = {expected} expected, {delivered} delivered "
            "(progress sent over HTTP is stored and streamed as sent, never coalesced)"
        )
        return outcome
