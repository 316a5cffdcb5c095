"""Periodic jobs: when a schedule ticks, and the ``Scheduler`` that turns its ticks into jobs.

A ``Scheduler`` runs in every worker process and every server, like the reaper, so any number
of them watch the same schedules. Exactly one job is made per tick all the same: the scheduler
that fires a tick moves the schedule's ``next_run_at`` from that tick to the next one with a
compare-and-set, in the write transaction that inserts the job, so every other scheduler's
compare-and-set of the same tick finds nothing to move and inserts nothing. The job's
idempotency key also names the schedule and the tick (``schedule:<name>:<tick>``): whatever
happens to the compare-and-set, a second job for one tick cannot be stored. A scheduler killed
mid-tick leaves either both changes or neither (the transaction), and the next poll of any
scheduler finds the tick still due.

A tick is *missed* when it is due for longer than ``MISSED_GRACE`` seconds with no job made for
it (no scheduler was running, or the schedule was written with a past ``next_run_at``). Each
schedule says what to do then: ``skip`` makes no job for missed ticks and goes on with the next
future tick, ``catch_up`` makes one job (for the oldest missed tick) and then goes on likewise.

Cron expressions are read by ``cronsim`` (PyPI): small, no dependencies, maintained by the
author of healthchecks.io, which runs it on millions of checks; it reads 5 fields (or 6, with
seconds first), takes time-zone-aware datetimes and handles DST as cron does (a time skipped by
the spring change runs at the change, a time repeated in autumn runs once).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

from jobqueue.errors import ValidationFailed
from jobqueue.models import MissedTicks, Schedule, ScheduleSpec

if TYPE_CHECKING:
    from jobqueue.service import JobQueueService

logger = logging.getLogger(__name__)

#: Seconds between two looks at the due schedules (a scheduler sleeps less when a tick is due
#: sooner). A schedule written through the API is seen at the next look.
POLL_INTERVAL = 1.0
#: Seconds a tick may be overdue and still get its job; older, it is missed (see the module doc).
#: Several polls long, so a scheduler slowed down by a busy machine does not miss ticks.
MISSED_GRACE = 5.0
#: Most due schedules read at one look (more wait for the next round of the same look).
DUE_BATCH = 100


@functools.cache
def _iana_zones() -> frozenset[str]:
    # Not "localtime": it is each host's own zone, and hosts must agree on when a tick is.
    return frozenset(available_timezones() - {"localtime"})


def time_zone(name: str) -> ZoneInfo:
    if name not in _iana_zones():
        raise ValidationFailed(
            f"unknown time zone {name!r}: give an IANA name such as UTC or Europe/Paris", "timezone"
        )
    return ZoneInfo(name)


def check_spec(spec: ScheduleSpec) -> None:
    """``ValidationFailed`` naming the field unless the schedule has exactly one of a valid cron
    expression and an interval, and a known time zone."""
    if (spec.cron is None) == (spec.every is None):
        raise ValidationFailed("give either cron (an expression) or every (seconds), not both", "cron")
    zone = time_zone(spec.timezone)
    if spec.cron is not None:
        try:
            next(CronSim(spec.cron, datetime.now(zone)))
        except (CronSimError, StopIteration) as exc:
            raise ValidationFailed(
                f"invalid cron expression {spec.cron!r}: {exc or 'it never fires'} (5 fields: "
                "minute hour day-of-month month day-of-week, or 6 with seconds first)",
                "cron",
            ) from None


def next_tick(spec: ScheduleSpec, after: float) -> float:
    """The schedule's first tick strictly after ``after`` (epoch seconds).

    Interval ticks are multiples of ``every`` since the Unix epoch, so every process computes
    the same ticks whenever it starts; cron ticks are read in the schedule's time zone.
    """
    if spec.every is not None:
        return (math.floor(after / spec.every) + 1) * spec.every
    assert spec.cron is not None
    start = datetime.fromtimestamp(after, time_zone(spec.timezone))
    return next(CronSim(spec.cron, start)).timestamp()


def tick_key(name: str, tick: datetime) -> str:
    """The idempotency key of the job of one tick of one schedule."""
    return f"schedule:{name}:{tick.astimezone(UTC).isoformat()}"


class Scheduler:
    """Makes the jobs of due schedules; safe to run in every process (see the module doc)."""

    def __init__(
        self,
        service: JobQueueService,
        *,
        poll_interval: float = POLL_INTERVAL,
        grace: float = MISSED_GRACE,
    ) -> None:
        self.service = service
        self.poll_interval = poll_interval
        self.grace = grace
        #: Jobs this scheduler made (other schedulers' jobs for the same ticks are not made).
        self.fired = 0

    async def run(self) -> None:
        while True:
            try:
                wait = await self.run_once()
            except Exception:
                # Like the reaper: one failed round must not end scheduling in this process.
                logger.exception("scheduler failed; retrying after %.1fs", self.poll_interval)
                wait = self.poll_interval
            await asyncio.sleep(wait)

    async def run_once(self) -> float:
        """Fire every tick that is due now; returns the seconds until the next look."""
        store = self.service.store
        while True:
            now = time.time()
            upcoming = await store.due_schedules(now + self.poll_interval, DUE_BATCH)
            due = [s for s in upcoming if s.next_run_at.timestamp() <= now]
            for schedule in due:
                await self.fire(schedule, now)
            if not due:
                break
            # Firing moved each schedule on; its next tick may be due already (a tick within
            # the grace behind another), or other schedules may wait beyond the batch.
        soonest = min((s.next_run_at.timestamp() for s in upcoming), default=math.inf)
        return max(0.0, min(self.poll_interval, soonest - time.time()))

    async def fire(self, schedule: Schedule, now: float) -> None:
        """Make the job of the schedule's due tick, or pass over missed ticks, as its policy says."""
        store = self.service.store
        due = schedule.next_run_at
        missed = now - due.timestamp() > self.grace
        if missed and schedule.missed is MissedTicks.SKIP:
            following = next_tick(schedule, now)
            if await store.skip_schedule_ticks(schedule.name, due, following):
                logger.warning(
                    "schedule %s: ticks from %s missed (no scheduler ran); skipped to %s",
                    schedule.name, due.isoformat(), datetime.fromtimestamp(following, UTC).isoformat(),
                )
            return
        following = next_tick(schedule, now if missed else due.timestamp())
        fired = await store.fire_schedule(
            schedule.name,
            due,
            following,
            job_type=schedule.job_type,
            request_data=schedule.request_data,
            priority=schedule.priority,
            max_attempts=schedule.max_attempts or self.service.settings.default_max_attempts,
            timeout=schedule.timeout,
            idempotency_key=tick_key(schedule.name, due),
        )
        if fired is None:
            return  # another scheduler fired this tick
        job, created = fired
        if not created:
            # Only the idempotency key kept a second job out: the compare-and-set should have.
            logger.warning("schedule %s: tick %s already had job %s", schedule.name, due.isoformat(), job.id)
            return
        self.fired += 1
        if missed:
            logger.warning("schedule %s: missed ticks from %s caught up by job %s", schedule.name, due.isoformat(), job.id)
        else:
            logger.info("schedule %s: tick %s queued job %s", schedule.name, due.isoformat(), job.id)
