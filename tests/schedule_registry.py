"""A registry declaring one schedule, for the scheduler processes of tests/test_schedules.py
(``--registry tests.schedule_registry:registry``): a job of type ``tick`` every second. No
worker claims ``tick`` jobs (no handler), so every job a tick made stays to be counted; the
``idle`` handler only gives the processes' pools a type to claim."""

from __future__ import annotations

from jobqueue.worker import JobContext, Registry

registry = Registry()
registry.schedule("every-second", "tick", every=1, request_data={"from": "code"})


@registry.handler("idle")
async def idle(ctx: JobContext) -> None:
    return None
