"""Handlers for worker subprocesses started by the tests (``--registry tests.handlers:registry``).

Every handler that has an effect appends one line to a ledger file named in the job's
``request_data["ledger"]``: ``<event> <job id> <pid>``. The file is opened with O_APPEND and each
line is written with a single ``write`` smaller than PIPE_BUF, so lines from concurrent processes
never interleave and the tests can count effects exactly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from jobqueue.worker import JobContext, Registry

registry = Registry()


def append_ledger(path: str, event: str, job_id: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {job_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def read_ledger(path: Path) -> list[tuple[str, str, int]]:
    """The ledger as (event, job id, pid) tuples; a missing file is an empty ledger."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        event, job_id, pid = line.split()
        entries.append((event, job_id, int(pid)))
    return entries


def _data(ctx: JobContext) -> dict[str, Any]:
    return ctx.request_data or {}


@registry.handler("ledger")
async def ledger(ctx: JobContext) -> dict[str, Any]:
    """Record one effect and finish; optionally sleep first (``seconds``)."""
    data = _data(ctx)
    if data.get("seconds"):
        await asyncio.sleep(float(data["seconds"]))
    append_ledger(data["ledger"], "done", ctx.job.id)
    return {"pid": os.getpid()}


@registry.handler("gate")
async def gate(ctx: JobContext) -> dict[str, Any]:
    """Record the start, wait until the file ``gate`` exists, then record the effect.

    A cancel or shutdown that interrupts the wait is recorded as ``interrupted``.
    """
    data = _data(ctx)
    append_ledger(data["ledger"], "started", ctx.job.id)
    try:
        while not os.path.exists(data["gate"]):
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        append_ledger(data["ledger"], "interrupted", ctx.job.id)
        raise
    append_ledger(data["ledger"], "done", ctx.job.id)
    return {"pid": os.getpid()}


@registry.handler("crash")
async def crash(ctx: JobContext) -> None:
    """A poison job: kills its own worker process every time it runs."""
    append_ledger(_data(ctx)["ledger"], "started", ctx.job.id)
    os.kill(os.getpid(), signal.SIGKILL)


@registry.handler("freeze")
async def freeze(ctx: JobContext) -> dict[str, Any]:
    """Block the whole event loop (no heartbeats) for ``seconds`` on the first attempt only.

    Later attempts finish at once, so the test sees which attempt's result stands.
    """
    data = _data(ctx)
    append_ledger(data["ledger"], "started", ctx.job.id)
    if ctx.job.attempts == 1:
        time.sleep(float(data["seconds"]))  # deliberately blocking: a frozen process
    append_ledger(data["ledger"], "done", ctx.job.id)
    return {"pid": os.getpid(), "attempt": ctx.job.attempts}


@registry.handler("long")
async def long(ctx: JobContext) -> dict[str, Any]:
    """Run ``seconds`` while reporting progress ten times, then record the effect."""
    data = _data(ctx)
    seconds = float(data["seconds"])
    for step in range(1, 11):
        await asyncio.sleep(seconds / 10)
        await ctx.progress(step * 10 - 1, f"step {step} of 10")
    append_ledger(data["ledger"], "done", ctx.job.id)
    return {"pid": os.getpid()}
