"""What every scenario shares: outcomes, child processes, peak RSS, percentiles, database setup."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.databases import Database, Databases

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Context:
    """Run-wide options handed to every scenario."""

    quick: bool
    workdir: Path
    redis_url: str
    #: ``sqlite`` or ``postgresql``: where this pass of the scenarios keeps its jobs.
    backend: str
    databases: Databases

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass
class Outcome:
    """What one scenario measured: named figures (each with a unit), notes, or why it was skipped."""

    name: str
    figures: dict[str, tuple[float, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    failed: str | None = None
    seconds: float = 0.0

    def add(self, key: str, value: float, unit: str) -> None:
        self.figures[key] = (value, unit)

    def value(self, key: str) -> float | None:
        item = self.figures.get(key)
        return None if item is None else item[0]

    def as_json(self) -> dict[str, Any]:
        return {
            "figures": {k: {"value": v, "unit": u} for k, (v, u) in self.figures.items()},
            "notes": self.notes,
            "skipped": self.skipped,
            "failed": self.failed,
            "seconds": round(self.seconds, 1),
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: the value some request actually saw)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def memory_mb(pid: int, key: str = "VmHWM") -> float:
    """``VmHWM`` (peak resident set) or ``VmRSS`` (current) of a live process, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


class Child:
    """A child process whose output goes to a log file, stopped (and reaped) on exit."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            list(args), env=env or child_env(), stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_rss_mb(self) -> float:
        return memory_mb(self.proc.pid, "VmHWM")

    def rss_mb(self) -> float:
        return memory_mb(self.proc.pid, "VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_http(url: str, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"process exited before answering {url}:\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # answering, if only to say no (a GET of a POST-only route)
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s:\n{child.tail()}")


class PeakSampler:
    """Samples a child's ``VmHWM`` in the background, so the peak survives the child's exit."""

    def __init__(self, child: Child, interval: float = 0.2) -> None:
        self.child = child
        self.interval = interval
        self.peak = 0.0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        try:
            self.peak = max(self.peak, self.child.peak_rss_mb())
        except (OSError, RuntimeError):
            pass  # the child has just exited; the last sample stands

    async def _loop(self) -> None:
        while self.child.alive():
            self.sample()
            await asyncio.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        if self._task is not None:
            self._task.cancel()


async def migrated(db: Database) -> None:
    """Apply every migration to a new database (the product's own runner)."""
    from jobqueue.service import JobQueueService
    from jobqueue.settings import Settings

    async with JobQueueService.open(Settings(database_url=db.url, run_worker=False)):
        pass


async def wait_until_done(
    db: Database, expected: int, timeout: float, workers: Sequence[Child] = ()
) -> None:
    """Poll until ``expected`` jobs are completed (failing at once if a worker died)."""
    deadline = time.monotonic() + timeout
    while True:
        done = await asyncio.to_thread(db.completed_count)
        if done >= expected:
            return
        for worker in workers:
            if not worker.alive() and worker.proc.returncode != 0:
                raise RuntimeError(f"worker exited with {worker.proc.returncode} after {done} jobs:\n{worker.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {expected} jobs completed within {timeout:g}s")
        await asyncio.sleep(0.2)


def read_json_line(text: str) -> dict[str, Any]:
    """The last line of a child's output that is a JSON object (its result)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError(f"no JSON result in output:\n{text[-2000:]}")
