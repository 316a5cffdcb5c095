"""Handlers of the CLI and logging tests (``--registry tests.dx_handlers:registry``).

``dx-flaky`` waits for the file ``request_data["gate"]`` (so the test can listen first), fails its
first attempt, and completes the next one; ``dx-ok`` completes at once; ``dx-fail`` always fails.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jobqueue.worker import JobContext, Registry

registry = Registry()


@registry.handler("dx-flaky")
async def flaky(ctx: JobContext) -> dict[str, Any]:
    while not os.path.exists(ctx.request_data["gate"]):
        await asyncio.sleep(0.02)
    if ctx.job.attempts == 1:
        raise RuntimeError("flaky on the first try")
    await ctx.progress(50, "second try under way")
    return {"ok": True, "attempt": ctx.job.attempts}


@registry.handler("dx-ok")
async def ok(ctx: JobContext) -> dict[str, Any]:
    return {"n": (ctx.request_data or {}).get("n")}


@registry.handler("dx-fail")
async def fail(ctx: JobContext) -> None:
    raise ValueError("bad input")
