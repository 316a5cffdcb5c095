"""Typed tasks for servers and workers started by tests/test_tasks.py
(``WORKER_REGISTRY=tests.task_handlers:registry``)."""

from __future__ import annotations

import msgspec

from jobqueue.worker import JobContext, Registry

registry = Registry()


class Size(msgspec.Struct):
    url: str
    width: int


@registry.task("typed-resize", max_attempts=2)
async def resize(ctx: JobContext, src: str, w: int = 64) -> Size:
    await ctx.progress(50, f"resizing {src}")
    return Size(url=f"{src}?w={w}", width=w)
