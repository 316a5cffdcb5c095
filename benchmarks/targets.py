"""The issues' targets and the jobqueue / peer comparisons, in one place: the printed table and
``latest.json`` are both built from ``TARGETS`` and ``PEERS`` here.

Every ratio compares figures measured in the same run, on the same machine state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from benchmarks.common import Outcome
from benchmarks.scenarios.scale import BATCH, FINISHED_RATIO, TYPED_RATIO

#: The queues a user of each backend would compare jobqueue with. huey-normal is huey at
#: jobqueue's own durability (WAL + synchronous NORMAL: a commit survives a crash of the
#: process, not of the machine), so it counts as durable too.
PEERS = {"sqlite": ("arq", "saq", "huey", "huey-normal"), "postgresql": ("procrastinate", "pgqueuer")}


class Figures:
    """The figures of one backend's pass, by scenario and key."""

    def __init__(self, outcomes: Iterable[Outcome]) -> None:
        self._by_name = {outcome.name: outcome for outcome in outcomes}

    def __call__(self, scenario: str, key: str) -> float | None:
        outcome = self._by_name.get(scenario)
        return None if outcome is None else outcome.value(key)

    def enqueue(self) -> float | None:
        return self("peers", "jobqueue enqueue") or self("processing", "enqueue (Python API, 50 tasks)")

    def process(self) -> float | None:
        """jobqueue's rate measured alternating with the peers (PostgreSQL), else the
        processing scenario's."""
        return self("peers", "jobqueue process") or self("processing", "process")


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours and theirs else None


def _fastest_peer(figures: Figures) -> float | None:
    rates = [rate for peer in PEERS["sqlite"] if (rate := figures("peers", f"{peer} process"))]
    return max(rates) if rates else None


@dataclass(frozen=True)
class Target:
    backend: str
    name: str
    goal: float
    measure: Callable[[Figures], float | None]
    higher_is_better: bool = True


TARGETS = (
    Target("sqlite", "processing / fastest durable peer >= 3", 3.0, lambda f: ratio(f.process(), _fastest_peer(f))),
    Target("sqlite", "processing >= 9,000 jobs/s", 9000, lambda f: f.process()),
    # Prefer: return=minimal: the no-op answers a small body, and so do the peers' endpoints.
    Target("sqlite", "HTTP enqueue (minimal) / no-op >= 0.5", 0.5, lambda f: f("http", "enqueue minimal / no-op")),
    Target("sqlite", "HTTP enqueue (minimal) / Starlette+SAQ >= 1.5", 1.5, lambda f: f("http", "enqueue / starlette+saq")),
    Target("sqlite", "HTTP enqueue (minimal) / Starlette+arq >= 1.5", 1.5, lambda f: f("http", "enqueue / starlette+arq")),
    Target("sqlite", "HTTP enqueue, 2 API processes / 1 >= 1.5", 1.5, lambda f: f("http", "enqueue, 2 processes / 1")),
    Target("sqlite", "processing, 2 worker processes / 1 >= 1.5", 1.5, lambda f: f("workers", "two / one")),
    Target(
        "sqlite",
        "idle p50 (cross-process) / SAQ p50 <= 1",
        1.0,
        lambda f: ratio(
            f("peers", "jobqueue enqueue->done p50 (alternating with saq)"), f("peers", "saq enqueue->done p50")
        ),
        higher_is_better=False,
    ),
    Target("sqlite", "claim rate 1M / 10k >= 0.8", 0.8, lambda f: f("scale", f"claim x1 {FINISHED_RATIO}")),
    Target("sqlite", "RSS growth 20k -> 200k <= 10%", 0.10, lambda f: f("memory", "growth"), higher_is_better=False),
    Target(
        "postgresql",
        "processing / procrastinate >= 2",
        2.0,
        lambda f: ratio(f.process(), f("peers", "procrastinate process")),
    ),
    Target("postgresql", "processing / pgqueuer >= 1", 1.0, lambda f: ratio(f.process(), f("peers", "pgqueuer process"))),
    Target("postgresql", "two worker processes / one >= 1.5", 1.5, lambda f: f("workers", "two / one")),
    Target("postgresql", "claim rate 1M / 10k >= 0.8", 0.8, lambda f: f("scale", f"claim x1 {FINISHED_RATIO}")),
)
# The typed claim behind a foreign backlog, on both backends (the claim-scale goal, 0.8, for
# single claims and batches).
TARGETS += tuple(
    Target(
        backend,
        f"typed claim {name}, 100k foreign / none >= 0.8",
        0.8,
        lambda f, key=key: f("scale", f"{key} {TYPED_RATIO}"),
    )
    for backend in ("sqlite", "postgresql")
    for name, key in (("x1", "claim x1"), (f"x{BATCH}", f"claim x{BATCH}"))
)

# Flow control (issue 12): processing with a concurrency limit on the type that does not bind.
TARGETS += tuple(
    Target(backend, "processing with max_running / without >= 0.8", 0.8, lambda f: f("limits", "limited / unlimited"))
    for backend in ("sqlite", "postgresql")
)


def comparisons(backend: str, figures: Figures) -> list[dict[str, Any]]:
    """jobqueue's row, then one per peer measured, with jobqueue / peer ratios."""
    ours = {"system": "jobqueue", "enqueue": figures.enqueue(), "process": figures.process()}
    if backend == "sqlite":
        ours["idle p50"] = figures("latency", "cross-process enqueue->done p50")
    rows = [ours]
    for peer in PEERS[backend]:
        theirs: dict[str, Any] = {
            "system": peer,
            "enqueue": figures("peers", f"{peer} enqueue"),
            "process": figures("peers", f"{peer} process"),
        }
        if backend == "sqlite":
            theirs["idle p50"] = figures("peers", f"{peer} enqueue->done p50")
            # jobqueue's idle p50 measured in rounds alternating with this peer's: the ratio
            # compares figures taken on the same machine state (see peers._interleaved_latency).
            theirs["our idle p50"] = figures("peers", f"jobqueue enqueue->done p50 (alternating with {peer})")
        if theirs["enqueue"] is None and theirs["process"] is None:
            continue
        theirs["ratios"] = {
            "enqueue": ratio(ours["enqueue"], theirs["enqueue"]),
            "process": ratio(ours["process"], theirs["process"]),
        }
        if backend == "sqlite":
            theirs["ratios"]["idle p50"] = ratio(theirs["our idle p50"], theirs["idle p50"])
        rows.append(theirs)
    return rows


def evaluate(backend: str, figures: Figures) -> list[dict[str, Any]]:
    """Each target of ``backend``: its value, goal and whether it is met (None: not measured)."""
    results = []
    for target in TARGETS:
        if target.backend != backend:
            continue
        value = target.measure(figures)
        met = None if value is None else (value >= target.goal if target.higher_is_better else value <= target.goal)
        results.append({"backend": backend, "target": target.name, "value": value, "goal": target.goal, "met": met})
    return results
