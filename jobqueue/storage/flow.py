"""Flow control per job type, decided once for every backend: how many jobs of a limited type a
claim may start, which waiting jobs a limit per concurrency key lets through, and when a rate
limit allows the next start.

The stores count in SQL, inside the claim's write transaction (SQLite: under the write lock;
PostgreSQL: after locking the type's ``job_type_controls`` row), and hand the counts here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from msgspec import UNSET

from jobqueue.models import ACTIVE_STATUSES, RateLimit, TypeControls, TypeControlsUpdate


class Limits(NamedTuple):
    """One type's row of ``job_type_controls``, as both stores read it."""

    job_type: str
    paused: bool
    max_running: int | None
    max_running_per_key: int | None
    rate_limit: int | None
    rate_period: float | None

    @property
    def limited(self) -> bool:
        """Whether a claim must count before it starts a job of this type."""
        return self.max_running is not None or self.max_running_per_key is not None or self.rate_limit is not None

    @property
    def active(self) -> bool:
        """Whether the claim must treat the type apart from types without controls."""
        return self.paused or self.limited


def allowance(limits: Limits, wanted: int, held: int, starts: int) -> int:
    """How many jobs of the type the claim may start now: ``wanted`` at most, less what
    ``max_running`` (``held`` jobs running) and the rate limit (``starts`` in the window) allow."""
    if limits.paused:
        return 0
    n = wanted
    if limits.max_running is not None:
        n = min(n, limits.max_running - held)
    if limits.rate_limit is not None:
        n = min(n, limits.rate_limit - starts)
    return max(n, 0)


class KeyedPicker:
    """Chooses, in claim order, the waiting jobs of a type with ``max_running_per_key``: a job
    whose key already has that many running (or chosen) is passed over, so one tenant's backlog
    does not hold back the others'. Jobs without a key count only against ``max_running``."""

    __slots__ = ("_counts", "_per_key", "_left")

    def __init__(self, held_by_key: Mapping[str, int], per_key: int, allowance: int) -> None:
        self._counts = dict(held_by_key)
        self._per_key = per_key
        self._left = allowance

    @property
    def full(self) -> bool:
        return self._left <= 0

    def take(self, key: str | None) -> bool:
        """Whether to claim the next job in claim order, whose concurrency key is ``key``."""
        if self._left <= 0:
            return False
        if key is not None:
            if self._counts.get(key, 0) >= self._per_key:
                return False
            self._counts[key] = self._counts.get(key, 0) + 1
        self._left -= 1
        return True


def next_start(starts: Sequence[float], rate_limit: int | None, rate_period: float | None, now: float) -> float | None:
    """When the rate limit allows the next start, from the window's starts (oldest first), or
    None when a start is allowed now."""
    if rate_limit is None or rate_period is None or len(starts) < rate_limit:
        return None
    # The window holds len(starts) >= rate_limit starts: the next one is allowed once all but
    # rate_limit - 1 of them have left it.
    at = starts[len(starts) - rate_limit] + rate_period
    return at if at > now else None


def type_controls(
    job_type: str,
    limits: Limits | None,
    by_status: Mapping[str, int],
    starts: Sequence[float],
    now: float,
    updated_at: datetime | None,
) -> TypeControls:
    """The API's view of one type: its controls (none without a row), counts and next start."""
    running = sum(by_status.get(s.value, 0) for s in ACTIVE_STATUSES)
    if limits is None:
        return TypeControls(job_type=job_type, running=running, by_status=dict(by_status))
    rate = None
    if limits.rate_limit is not None and limits.rate_period is not None:
        rate = RateLimit(limit=limits.rate_limit, period=limits.rate_period)
    at = next_start(starts, limits.rate_limit, limits.rate_period, now)
    return TypeControls(
        job_type=job_type,
        paused=limits.paused,
        max_running=limits.max_running,
        max_running_per_key=limits.max_running_per_key,
        rate=rate,
        running=running,
        by_status=dict(by_status),
        next_start_at=None if at is None else datetime.fromtimestamp(at, UTC),
        updated_at=updated_at,
    )


async def list_type_controls(
    stored: Mapping[str, tuple[Limits, datetime | None]],
    counts: Iterable[tuple[str, str, int]],
    window_starts: Callable[[Limits], Awaitable[list[float]]],
    now: float,
) -> list[TypeControls]:
    """Every type with controls (``stored``: its limits and when they changed) or with jobs
    (``counts``: type, status, jobs), by name; ``window_starts`` reads a rate-limited type's
    starts in its window."""
    by_type: dict[str, dict[str, int]] = {name: {} for name in stored}
    for job_type, status, jobs in counts:
        by_type.setdefault(job_type, {})[status] = jobs
    items = []
    for job_type in sorted(by_type):
        limits, updated_at = stored.get(job_type, (None, None))
        starts = [] if limits is None else await window_starts(limits)
        items.append(type_controls(job_type, limits, by_type[job_type], starts, now, updated_at))
    return items


class ControlsChange(NamedTuple):
    """A ``TypeControlsUpdate`` as the stores' upsert takes it: each field's value and whether
    it was sent (a field not sent keeps its stored value)."""

    paused: bool | None
    paused_set: bool
    max_running: int | None
    max_running_set: bool
    max_running_per_key: int | None
    per_key_set: bool
    rate_limit: int | None
    rate_period: float | None
    rate_set: bool

    @classmethod
    def of(cls, update: TypeControlsUpdate) -> ControlsChange:
        def given(value: object) -> tuple[object, bool]:
            return (None, False) if value is UNSET else (value, True)

        paused, paused_set = given(update.paused)
        max_running, max_running_set = given(update.max_running)
        per_key, per_key_set = given(update.max_running_per_key)
        rate, rate_set = given(update.rate)
        return cls(
            paused=paused,  # type: ignore[arg-type]
            paused_set=paused_set,
            max_running=max_running,  # type: ignore[arg-type]
            max_running_set=max_running_set,
            max_running_per_key=per_key,  # type: ignore[arg-type]
            per_key_set=per_key_set,
            rate_limit=None if rate is None else rate.limit,  # type: ignore[attr-defined]
            rate_period=None if rate is None else float(rate.period),  # type: ignore[attr-defined]
            rate_set=rate_set,
        )

    @property
    def clears_rate(self) -> bool:
        return self.rate_set and self.rate_limit is None
