"""Client commands that follow a server live: ``wait``, ``events``, ``top`` and ``check``.

On a terminal they redraw in place (``wait`` one line cut between words to the terminal's width,
``top`` the whole screen); otherwise they print plain lines, so a log or a pipe gets text it can
read, and ``top`` prints once. Ctrl-C ends any of them quietly (exit 130).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from jobqueue.cli_client import (
    EXIT_JOB_CANCELLED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    ClientCommand,
    _configure_job_id,
    _encode_json,
    _print_json,
    _when,
)
from jobqueue.client import ClientError, JobCancelled, JobFailed, JobQueueClient, WaitTimeout
from jobqueue.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    EventKind,
    Job,
    JobEvent,
    JobStats,
    JobStatus,
)

#: Seconds between redraws of a terminal line with nothing new, so the elapsed time moves.
TICK_SECONDS = 0.5
#: Exit code of ``check`` when the server or its database is not healthy.
EXIT_UNHEALTHY = 1
#: Jobs ``top`` reads to learn which job types exist (the newest ones).
TYPE_DISCOVERY_PAGE = 500


# -- output helpers --------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """``4.2s``, ``3m05s``, ``2h07m``: short enough for a status line."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fit(parts: list[str], width: int) -> str:
    """The non-empty ``parts`` joined by two spaces, shortened to ``width`` characters at a
    space (never inside a word) with ``...`` marking the cut."""
    text = "  ".join(part for part in parts if part)
    if len(text) <= width:
        return text
    cut = text[: max(0, width - 3)]
    space = cut.rfind(" ")
    if space > 0:
        cut = cut[:space]
    return cut.rstrip() + "..."


def _terminal_width() -> int:
    return shutil.get_terminal_size((80, 24)).columns


# -- wait ------------------------------------------------------------------------------------------


class WaitView:
    """What ``wait`` shows while a job runs: progress, status, attempt, elapsed time, message and
    the last error while it retries. On a terminal one line redrawn in place that fits the
    terminal's width; otherwise one plain line per change."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.started = time.monotonic()
        self.status: JobStatus | None = None
        self.progress = 0
        self.message: str | None = None
        self.attempts = 0
        self.max_attempts = 0
        self.last_error: str | None = None
        self._printed: list[str] | None = None
        self._drawn = False

    def update(self, item: Job | JobEvent) -> None:
        if isinstance(item, Job):
            self.attempts, self.max_attempts = item.attempts, item.max_attempts
            if item.error and item.status not in TERMINAL_STATUSES:
                self.last_error = item.error
        else:
            if item.status in ACTIVE_STATUSES and (self.status is None or self.status in WAITING_STATUSES):
                self.attempts += 1  # a claim starts the next attempt
            if item.kind is EventKind.REQUEUED and isinstance(item.data, dict) and item.data.get("error"):
                self.last_error = str(item.data["error"])
        self.status, self.progress, self.message = item.status, item.progress, item.message
        self.draw()

    def elapsed(self) -> str:
        return duration(time.monotonic() - self.started)

    def attempt(self) -> str:
        if not self.max_attempts or (self.attempts == 0 and self.status in WAITING_STATUSES):
            return ""
        text = f"attempt {self.attempts}/{self.max_attempts}"
        return text + " failed" if self.status in WAITING_STATUSES else text

    def parts(self) -> list[str]:
        status = self.status.value if self.status else "waiting"
        retrying = self.last_error and self.status not in TERMINAL_STATUSES
        return [
            f"{self.progress:3d}% {status}" if self.tty else f"{status} {self.progress}%",
            self.attempt(),
            self.message or "",
            f"last error: {self.last_error}" if retrying else "",
        ]

    def draw(self) -> None:
        if self.status is None:
            return
        if not self.tty:
            parts = self.parts()
            if parts != self._printed:  # the elapsed time alone is no change
                self._printed = parts
                self.out.write(fit([*parts[:2], self.elapsed(), *parts[2:]], 10_000) + "\n")
                self.out.flush()
            return
        columns = _terminal_width()
        bar_width = max(10, min(40, columns // 4))
        filled = bar_width * self.progress // 100
        bar = f"[{'#' * filled}{'.' * (bar_width - filled)}]"
        parts = self.parts()
        line = fit([bar + " " + parts[0], parts[1], self.elapsed(), *parts[2:]], columns - 1)
        self.out.write("\r\x1b[2K" + line)
        self.out.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False

    def outcome(self, job: Job) -> str:
        """The last line: how the job ended, after how long and which attempt, and its result
        (or error, or message)."""
        if job.status is JobStatus.FAILED:
            detail = job.error
        elif job.status is JobStatus.COMPLETED and job.result_data is not None:
            detail = _encode_json(job.result_data).decode()
        else:
            detail = job.message
        attempt = f", attempt {job.attempts}/{job.max_attempts}" if job.attempts else ""
        return f"job {job.id} {job.status.value} after {self.elapsed()}{attempt}" + (f": {detail}" if detail else "")


async def follow_job(
    client: JobQueueClient, job_id: str, out: TextIO, *, timeout: float | None, quiet: bool, json: bool
) -> int:
    """Follow a job to its end as ``wait`` does; returns ``wait``'s exit code."""
    view = None if quiet or json else WaitView(out, out.isatty())

    async def tick() -> None:
        assert view is not None
        while True:
            await asyncio.sleep(TICK_SECONDS)
            view.draw()

    ticker = asyncio.create_task(tick()) if view is not None and view.tty else None
    try:
        job = await client.wait(job_id, timeout=timeout, on_update=None if view is None else view.update)
        code = EXIT_OK
    except JobCancelled as exc:
        job, code = exc.job, EXIT_JOB_CANCELLED
    except JobFailed as exc:
        job, code = exc.job, EXIT_JOB_FAILED
    except WaitTimeout as exc:
        if view is not None:
            view.close()
        print(f"jobqueue: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        if view is not None:
            view.close()
    if json:
        _print_json(job, out)
    elif view is not None:
        out.write(view.outcome(job) + "\n")
    return code


def _configure_wait(parser: argparse.ArgumentParser) -> None:
    _configure_job_id(parser)
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="give up after S seconds (exit 124); default: wait for ever"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output, only the exit code")


async def _wait(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    return await follow_job(client, args.job_id, out, timeout=args.timeout, quiet=args.quiet, json=args.json)


# -- events ----------------------------------------------------------------------------------------


def _configure_events(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", metavar="ID", help="only this job's events (from its start; ends with it)")
    parser.add_argument("--job-type", metavar="T", help="only events of jobs of this type")


def event_line(event: JobEvent) -> str:
    error = event.data.get("error") if isinstance(event.data, dict) else None
    parts = [
        _when(event.at),
        event.job_id,
        event.job_type,
        event.kind.value,
        f"{event.status.value} {event.progress}%",
        event.message or "",
        f"error: {error}" if error else "",
    ]
    return "  ".join(part for part in parts if part)


async def _events(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.job:
        stream: Any = client.events(args.job, last_event_id=0)
    else:
        stream = client.all_events(job_type=args.job_type)
    async for event in stream:
        if args.job_type and event.job_type != args.job_type:
            continue
        out.write((_encode_json(event).decode() if args.json else event_line(event)) + "\n")
        out.flush()
    return EXIT_OK


# -- top -------------------------------------------------------------------------------------------

#: Columns of ``top``: a name and the statuses it adds up.
STATUS_GROUPS: dict[str, frozenset[JobStatus]] = {
    "WAITING": WAITING_STATUSES,
    "RUNNING": ACTIVE_STATUSES,
    "COMPLETED": frozenset({JobStatus.COMPLETED}),
    "FAILED": frozenset({JobStatus.FAILED}),
    "CANCELLED": frozenset({JobStatus.CANCELLED}),
}


def _configure_top(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between refreshes (default 2)")
    parser.add_argument(
        "--job-type", action="append", metavar="T", help="show this type even before it has jobs (repeat for several)"
    )


def _row(name: str, stats: JobStats) -> list[str]:
    counts = [sum(stats.by_status.get(s.value, 0) for s in group) for group in STATUS_GROUPS.values()]
    return [name, *(str(count) for count in counts), str(stats.total)]


def top_screen(url: str, overall: JobStats, per_type: dict[str, JobStats]) -> list[str]:
    rows = [["TYPE", *STATUS_GROUPS, "TOTAL"], _row("all", overall)]
    rows += [_row(name, stats) for name, stats in sorted(per_type.items())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in rows
    ]
    seconds = lambda v: "-" if v is None else duration(v)  # noqa: E731
    return [
        f"jobqueue {url}  {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC",
        *lines,
        f"ready {overall.ready}, scheduled {overall.scheduled}, oldest waiting {_when(overall.oldest_waiting_at)}; "
        f"mean wait {seconds(overall.avg_wait_seconds)}, run {seconds(overall.avg_run_seconds)} (last hour)",
    ]


async def _top(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    types: set[str] = set(args.job_type or ())
    live = out.isatty() and not args.json
    while True:
        page = await client.list(limit=TYPE_DISCOVERY_PAGE)
        types.update(job.job_type for job in page.items)
        overall = await client.stats()
        per_type = dict(zip(sorted(types), await asyncio.gather(*(client.stats(t) for t in sorted(types)))))
        if args.json:
            _print_json({"all": overall, "by_type": per_type}, out)
            return EXIT_OK
        lines = top_screen(client.base_url, overall, per_type)
        if not live:
            out.write("\n".join(lines) + "\n")
            return EXIT_OK
        width = _terminal_width() - 1
        # Home, then each line cleared as it is written, then the rest of the screen cleared.
        out.write("\x1b[H" + "".join(f"\x1b[2K{line[:width]}\n" for line in lines) + "\x1b[J")
        out.write(f"every {args.interval:g}s; Ctrl-C to stop")
        out.flush()
        await asyncio.sleep(args.interval)


# -- check -----------------------------------------------------------------------------------------


def _configure_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S", help="give up after S seconds (default 5)")


async def _check(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    try:
        async with asyncio.timeout(args.timeout):
            status, body = await client.health()
    except TimeoutError:
        print(f"jobqueue: unhealthy: {client.base_url}/health did not answer within {args.timeout:g}s", file=sys.stderr)
        return EXIT_UNHEALTHY
    except ClientError as exc:
        print(f"jobqueue: unhealthy: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    if args.json:
        _print_json(body, out)
    checks = ", ".join(f"{name} {value}" for name, value in body.items() if name != "status")
    if status == 200 and body.get("status") == "ok":
        if not args.json:
            out.write(f"ok: {checks}\n")
        return EXIT_OK
    print(f"jobqueue: unhealthy: HTTP {status}: {checks or body}", file=sys.stderr)
    return EXIT_UNHEALTHY


#: The commands of this module, added to the CLI beside ``CLIENT_COMMANDS``.
FOLLOW_COMMANDS: dict[str, ClientCommand] = {
    "wait": ClientCommand(
        "follow a job's progress until it finishes (exit 0 completed, 1 failed, 3 cancelled, 124 timeout)",
        _configure_wait,
        _wait,
    ),
    "events": ClientCommand(
        "print events as they happen, one line each: every job's, or one job's (--job); Ctrl-C stops",
        _configure_events,
        _events,
    ),
    "top": ClientCommand(
        "live job counts by type and status (prints once when not on a terminal)", _configure_top, _top
    ),
    "check": ClientCommand(
        "exit 0 when the server and its database are healthy, else 1 with the reason (a health check)",
        _configure_check,
        _check,
    ),
}
