"""Helpers of the event-stream tests: a handler the test paces, an SSE reader, worker processes.

``--registry tests.event_handlers:registry`` gives a worker subprocess the ``gated`` handler: it
reports ``waiting`` and then waits for the file ``request_data["gate"]`` before it reports
``steps`` more progress updates and completes. The test connects its SSE client first, opens
the gate, and so knows every later event was made in the worker process while it listened.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec

from jobqueue.worker import JobContext, Registry
from tests.conftest import stop_process, subprocess_env

registry = Registry()

#: Seconds between two reported steps: above the worker's coalescing interval, so each
#: step is stored as its own event.
STEP_SECONDS = 0.15


@registry.handler("gated")
async def gated(ctx: JobContext) -> dict[str, Any]:
    data = ctx.request_data or {}
    await ctx.progress(1, "waiting for the gate")
    while not os.path.exists(data["gate"]):
        await asyncio.sleep(0.05)
    steps = int(data.get("steps", 5))
    for step in range(1, steps + 1):
        await asyncio.sleep(STEP_SECONDS)
        await ctx.progress(step * 90 // steps, f"step {step} of {steps}")
    return {"pid": os.getpid(), "steps": steps}


# -- reading Server-Sent Events --------------------------------------------------------------


class SSEMessage(msgspec.Struct, kw_only=True):
    """One dispatched SSE message, or a comment (``comment`` set, the rest empty)."""

    id: int | None = None
    event: str | None = None
    data: Any = None
    comment: str | None = None


async def sse_messages(response: httpx.Response) -> AsyncIterator[SSEMessage]:
    """The messages and comments of an event stream, as the server sends them."""
    fields: dict[str, str] = {}
    data_lines: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data_lines or fields:
                yield SSEMessage(
                    id=int(fields["id"]) if "id" in fields else None,
                    event=fields.get("event"),
                    data=msgspec.json.decode("\n".join(data_lines)) if data_lines else None,
                )
            fields, data_lines = {}, []
        elif line.startswith(":"):
            yield SSEMessage(comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data_lines.append(value)
            else:
                fields[name] = value


async def next_message(messages: AsyncIterator[SSEMessage], timeout: float = 20.0) -> SSEMessage:
    """The next message that is not a comment (a generous ceiling: the machine may be slow)."""
    async with asyncio.timeout(timeout):
        async for message in messages:
            if message.comment is None:
                return message
    raise AssertionError("the stream ended")


async def read_until_end(messages: AsyncIterator[SSEMessage], timeout: float = 30.0) -> list[SSEMessage]:
    """Every message (comments left out) until the server ends the stream."""
    received = []
    async with asyncio.timeout(timeout):
        async for message in messages:
            if message.comment is None:
                received.append(message)
    return received


# -- worker processes ------------------------------------------------------------------------


@contextmanager
def worker_process(tmp_path: Path, database_url: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m jobqueue worker`` on the test database with the ``gated`` handler; its log
    goes to ``tmp_path``."""
    log_path = tmp_path / f"worker-{time.monotonic_ns()}.log"
    full_env = subprocess_env(**{"DATABASE_URL": database_url, "POLL_INTERVAL": "0.2", **env})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            # --with-examples: the example generation jobs too, besides the registry's own.
            [sys.executable, "-m", "jobqueue", "worker", "--log-level", "warning",
             "--registry", "tests.event_handlers:registry", "--with-examples"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        stop_process(proc, timeout=20)
