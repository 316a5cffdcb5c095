"""Client commands of the CLI: ``jobqueue enqueue|get|list|stats|cancel|retry|delete|schedules|schedule``,
the flow controls of job types (``types|pause|resume|limit``), the worker pools (``workers``) and
the bulk operations (``enqueue-batch|retry-failed|cancel-waiting|purge``); in cli_follow.py, the
live ones: ``wait|events|top|check``.

They talk to a running server over HTTP through ``jobqueue.client`` (``--url``, env
``JOBQUEUE_URL``, default http://127.0.0.1:8000; ``--api-key``, env ``JOBQUEUE_API_KEY``). ``--json`` prints the API's JSON for scripts.
Any failure is one line on stderr and a non-zero exit, never a traceback.

Exit codes: 0 success; 2 an error (server unreachable, job not found, refused request, bad
input); ``wait`` also exits 1 when the job failed, 3 when it was cancelled and 124 when
``--timeout`` passed first (as coreutils ``timeout`` does).

A command is one ``ClientCommand`` in ``CLIENT_COMMANDS``: adding one is a parser function, an
async runner and one entry in that table. (``prune`` is not here: it works on the database
directly, like ``migrate``, and lives in cli.py.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
import msgspec

from jobqueue.client import DEFAULT_URL, ClientError, JobQueueClient
from jobqueue.models import Attempt, Job, JobStatus, TypeControls

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_ERROR = 2
EXIT_JOB_CANCELLED = 3
EXIT_TIMEOUT = 124

_encode_json = msgspec.json.Encoder().encode


class UsageError(Exception):
    """Bad input to a client command (a malformed --data): reported like any other error."""


@dataclass(frozen=True)
class ClientCommand:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[JobQueueClient, argparse.Namespace, TextIO], Awaitable[int]]


# -- output ----------------------------------------------------------------------------------------


def _print_json(value: Any, out: TextIO) -> None:
    out.write(msgspec.json.format(_encode_json(value), indent=2).decode() + "\n")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_job(job: Job, out: TextIO) -> None:
    fields: list[tuple[str, Any]] = [
        ("id", job.id),
        ("type", job.job_type),
        ("status", job.status.value),
        ("progress", f"{job.progress}%"),
        ("message", job.message or "-"),
        ("priority", job.priority),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("worker", job.worker_id or "-"),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.completed_at)),
        ("request", _encode_json(job.request_data).decode()),
    ]
    if job.result_data is not None:
        fields.append(("result", _encode_json(job.result_data).decode()))
    if job.error:
        fields.append(("error", job.error))
    if job.cancel_requested and job.status.value not in ("cancelled", "completed", "failed"):
        fields.append(("cancel", "requested"))
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        out.write(f"{name:<{width}}  {value}\n")


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)] + [row[-1]]
        out.write("  ".join(cells).rstrip() + "\n")


# -- commands --------------------------------------------------------------------------------------


def _configure_enqueue(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_type", metavar="TYPE", help="job type, e.g. generation")
    parser.add_argument(
        "--data", metavar="JSON", help="request data: a JSON object, @file to read one, - for stdin"
    )
    parser.add_argument("--priority", type=int, default=0, metavar="N", help="higher runs first (default 0)")
    parser.add_argument("--max-attempts", type=int, metavar="N", help="attempts before it fails for good")
    parser.add_argument("--timeout", type=float, metavar="S", help="seconds one attempt may run")
    parser.add_argument("--delay", type=float, metavar="S", help="do not run before S seconds from now")
    parser.add_argument(
        "--idempotency-key",
        metavar="KEY",
        default=os.environ.get("JOBQUEUE_IDEMPOTENCY_KEY"),
        help="a repeat with the same key returns the first job instead of queueing another "
        "[env JOBQUEUE_IDEMPOTENCY_KEY]",
    )
    parser.add_argument(
        "--concurrency-key",
        metavar="KEY",
        help="a tenant, user or other partition: the type's max_running_per_key counts jobs per key",
    )
    parser.add_argument(
        "--depends-on",
        action="append",
        metavar="ID",
        help="wait until this job completed (repeat for several)",
    )
    parser.add_argument(
        "--on-dependency-failure",
        choices=("cancel", "run"),
        help="when a dependency fails or is cancelled: cancel this job (default) or run it anyway",
    )
    parser.add_argument(
        "--unique-key", metavar="KEY", help="while a job with this key is unfinished, return it instead"
    )
    parser.add_argument(
        "--debounce",
        type=float,
        metavar="S",
        help="with --unique-key: run S seconds after the last repeat, with its data",
    )
    parser.add_argument(
        "--wait", action="store_true", help="then follow the job like `jobqueue wait` (and exit as it does)"
    )
    parser.add_argument("--wait-timeout", type=float, metavar="S", help="with --wait: give up after S seconds (exit 124)")
    parser.add_argument("--quiet", "-q", action="store_true", help="with --wait: only the id and the exit code")


def _request_data(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    source = "--data"
    if raw == "-":
        raw, source = sys.stdin.read(), "stdin"
    elif raw.startswith("@"):
        try:
            raw, source = Path(raw[1:]).read_text(), raw[1:]
        except OSError as exc:
            raise UsageError(f"cannot read {raw[1:]}: {exc.strerror}") from None
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source} must be a JSON object, got {type(data).__name__}")
    return data


async def _enqueue(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    job = await client.enqueue(
        args.job_type,
        _request_data(args.data),
        priority=args.priority,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
        delay=args.delay,
        idempotency_key=args.idempotency_key,
        concurrency_key=args.concurrency_key,
        depends_on=args.depends_on,
        on_dependency_failure=args.on_dependency_failure,
        unique_key=args.unique_key,
        debounce=args.debounce,
    )
    if args.wait:
        from jobqueue.cli_follow import follow_job

        if not args.json:
            out.write(job.id + "\n")
        return await follow_job(client, job.id, out, timeout=args.wait_timeout, quiet=args.quiet, json=args.json)
    if args.json:
        _print_json(job, out)
    else:
        out.write(job.id + "\n")  # only the id, so `ID=$(jobqueue enqueue ...)` works
    return EXIT_OK


def _configure_job_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="ID", help="the job's id")


async def _get(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    job = await client.get(args.job_id)
    if args.json:
        _print_json(job, out)
        return EXIT_OK
    _print_job(job, out)
    attempts = (await client.attempts(job.id)).attempts
    if attempts:
        out.write("attempts:\n")
    traced = [a for a in attempts if a.traceback]
    for attempt in attempts:
        _print_attempt(attempt, out, with_traceback=bool(traced) and attempt is traced[-1])
    return EXIT_OK


def _print_attempt(attempt: Attempt, out: TextIO, *, with_traceback: bool) -> None:
    """One line per attempt; the traceback (indented) only of the last one that has one, where
    the cause of the job's current state is (the others: ``GET /api/jobs/{id}/attempts``)."""
    took = ""
    if attempt.started_at is not None and attempt.ended_at is not None:
        took = f" in {(attempt.ended_at - attempt.started_at).total_seconds():.3g}s"
    started = "" if attempt.started_at is None else f" started {attempt.started_at.isoformat(timespec='seconds')}"
    line = f"  #{attempt.attempt} {attempt.outcome}{took} on {attempt.worker_id or '-'}{started}"
    out.write(line + ("" if attempt.error is None else f": {attempt.error}") + "\n")
    if with_traceback and attempt.traceback:
        out.write("".join(f"      {row}\n" for row in attempt.traceback.rstrip().splitlines()))


def _configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--status",
        action="append",
        metavar="S",
        choices=[s.value for s in JobStatus],
        help="only jobs in this status (repeat for several)",
    )
    parser.add_argument("--job-type", metavar="T", help="only jobs of this type")
    parser.add_argument("--worker-id", metavar="W", help="only jobs held by this worker")
    parser.add_argument("--id-prefix", metavar="P", help="only jobs whose id starts with P (4 characters or more)")
    parser.add_argument(
        "--data",
        action="append",
        type=_data_filter,
        metavar="FIELD=VALUE",
        help="only jobs whose request_data has FIELD equal to VALUE (a string or number; repeat for several)",
    )
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="jobs to show (default 20)")
    parser.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N (paging)")


def _data_filter(text: str) -> tuple[str, str]:
    field, equals, value = text.partition("=")
    if not equals or not field:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return field, value


async def _list(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    page = await client.list(
        status=args.status,
        job_type=args.job_type,
        worker_id=args.worker_id,
        id_prefix=args.id_prefix,
        data=dict(args.data or ()),
        limit=args.limit,
        offset=args.offset,
    )
    if args.json:
        _print_json(page, out)
        return EXIT_OK
    if not page.items:
        out.write(f"no jobs (total {page.total})\n")
        return EXIT_OK
    # Failed jobs say why: the error replaces the message (which is often the last progress).
    errors = any(job.error for job in page.items)
    rows = [["ID", "TYPE", "STATUS", "PROGRESS", "CREATED", "ERROR / MESSAGE" if errors else "MESSAGE"]]
    for job in page.items:
        note = job.error if job.status is JobStatus.FAILED and job.error else job.message or ""
        rows.append([job.id, job.job_type, job.status.value, f"{job.progress}%", _when(job.created_at), note])
    _table(rows, out)
    shown = f"{page.offset + 1}-{page.offset + len(page.items)}"
    out.write(f"showing {shown} of {page.total}\n")
    return EXIT_OK


def _configure_stats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job-type", metavar="T", help="only jobs of this type")


async def _stats(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    stats = await client.stats(args.job_type)
    if args.json:
        _print_json(stats, out)
        return EXIT_OK
    rows = [["STATUS", "JOBS"]] + [[status, str(count)] for status, count in stats.by_status.items() if count]
    rows.append(["total", str(stats.total)])
    _table(rows, out)
    seconds = lambda v: "-" if v is None else f"{v:.2f}s"  # noqa: E731
    out.write(f"ready {stats.ready}, scheduled {stats.scheduled}, oldest waiting {_when(stats.oldest_waiting_at)}\n")
    out.write(f"mean wait {seconds(stats.avg_wait_seconds)}, mean run {seconds(stats.avg_run_seconds)} (last hour)\n")
    if stats.unserved_types:
        out.write(f"waiting jobs no live worker serves: {', '.join(stats.unserved_types)}\n")
    return EXIT_OK


async def _cancel(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    job = await client.cancel(args.job_id)
    if args.json:
        _print_json(job, out)
    elif job.status is JobStatus.CANCELLED:
        out.write(f"job {job.id} cancelled\n")
    else:
        out.write(f"job {job.id} is {job.status.value}: cancel requested, its worker stops it shortly\n")
    return EXIT_OK


async def _delete(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.delete(args.job_id)
    if args.json:
        _print_json({"id": args.job_id, "deleted": True}, out)
    else:
        out.write(f"job {args.job_id} deleted\n")
    return EXIT_OK


async def _retry(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    job = await client.retry(args.job_id)
    if args.json:
        _print_json(job, out)
    else:
        out.write(f"job {job.id} queued again ({job.status.value})\n")
    return EXIT_OK


# -- worker pools and bulk operations ---------------------------------------------------------


async def _workers(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    listing = await client.workers()
    if args.json:
        _print_json(listing, out)
        return EXIT_OK
    if listing.items:
        rows = [["ID", "HOST", "PID", "TYPES", "CONCURRENCY", "HELD", "STARTED", "HEARTBEAT"]]
        for worker in listing.items:
            rows.append(
                [
                    worker.id, worker.host, str(worker.pid), ",".join(worker.job_types),
                    str(worker.concurrency), str(worker.held_jobs), _when(worker.started_at),
                    _when(worker.heartbeat_at),
                ]
            )  # fmt: skip
        _table(rows, out)
    else:
        out.write("no live workers\n")
    if listing.unserved_types:
        out.write(f"waiting jobs no live worker serves: {', '.join(listing.unserved_types)}\n")
    return EXIT_OK


def _configure_enqueue_batch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", help="the jobs: JSON lines or one JSON array of POST /api/jobs bodies; - for stdin"
    )
    parser.add_argument(
        "--atomic", action="store_true", help="all or nothing: one refused job refuses the batch"
    )


def _batch_jobs(source: str) -> list[dict[str, Any]]:
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    try:
        if text.lstrip().startswith("["):
            jobs = msgspec.json.decode(text)
        else:
            jobs = [msgspec.json.decode(line) for line in text.splitlines() if line.strip()]
    except msgspec.DecodeError as exc:
        raise UsageError(f"{source} is neither JSON lines nor a JSON array: {exc}") from None
    if not jobs or not all(isinstance(job, dict) for job in jobs):
        raise UsageError(f"{source} must hold one or more JSON objects (jobs)")
    return jobs  # type: ignore[no-any-return]


async def _enqueue_batch(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    result = await client.enqueue_many(_batch_jobs(args.file), atomic=args.atomic)
    if args.json:
        _print_json(result, out)
        return EXIT_OK
    for item in result.items:
        if item.job is not None:
            out.write(f"{item.job.id}\n")
        else:
            assert item.error is not None
            print(f"jobqueue: job #{item.index} refused: {item.error.detail}", file=sys.stderr)
    out.write(f"created {result.created}, existing {result.existing}, refused {result.refused}\n")
    return EXIT_OK if result.refused == 0 else EXIT_ERROR


def _configure_bulk_type(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_type", metavar="TYPE", help="the job type")
    parser.add_argument("--limit", type=int, metavar="N", help="most jobs to change (server default and maximum 1000)")


def _bulk_done(result: Any, what: str, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        _print_json(result, out)
    else:
        more = "; more remain: run it again" if result.more else ""
        out.write(f"{result.affected} job(s) {what}{more}\n")
    return EXIT_OK


async def _retry_failed(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    result = await client.retry_failed(args.job_type, limit=args.limit)
    return _bulk_done(result, "queued again", args, out)


async def _cancel_waiting(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    result = await client.cancel_waiting(args.job_type, limit=args.limit)
    return _bulk_done(result, "cancelled", args, out)


def _configure_purge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--status",
        action="append",
        required=True,
        metavar="S",
        choices=["completed", "failed", "cancelled"],
        help="purge finished jobs in this status (repeat for several)",
    )
    parser.add_argument("--type", dest="job_type", metavar="T", help="only jobs of this type")
    parser.add_argument(
        "--before", type=datetime.fromisoformat, metavar="ISO", help="only jobs finished before this instant"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="most jobs to delete (server default and maximum 1000)")


async def _purge(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    result = await client.purge(args.status, job_type=args.job_type, before=args.before, limit=args.limit)
    return _bulk_done(result, "deleted", args, out)


# -- periodic jobs ---------------------------------------------------------------------------------


def _no_options(parser: argparse.ArgumentParser) -> None:
    """A command with only the common options."""


def _every(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"every {seconds:g}s"


async def _schedules(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    schedules = await client.schedules()
    if args.json:
        _print_json(schedules, out)
        return EXIT_OK
    if not schedules:
        out.write("no schedules (jobqueue schedule add NAME TYPE --cron EXPR | --every SECONDS)\n")
        return EXIT_OK
    rows = [["NAME", "TYPE", "WHEN", "TZ", "NEXT RUN (UTC)", "LAST RUN (UTC)", "STATE"]]
    for item in schedules:
        rows.append(
            [
                item.name,
                item.job_type,
                item.cron or _every(item.every),
                item.timezone,
                _when(item.next_run_at),
                _when(item.last_run_at),
                "paused" if item.paused else "active",
            ]
        )
    _table(rows, out)
    return EXIT_OK


def _configure_schedule(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create or replace a schedule")
    add.add_argument("name", metavar="NAME", help="the schedule's name")
    add.add_argument("job_type", metavar="TYPE", help="the job type of its jobs")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="a cron expression: 5 fields, or 6 with seconds first")
    when.add_argument("--every", type=float, metavar="SECONDS", help="an interval in seconds")
    add.add_argument("--tz", default="UTC", metavar="ZONE", help="IANA time zone of --cron (default UTC)")
    add.add_argument("--data", metavar="JSON", help="request data of its jobs: a JSON object, @file, - for stdin")
    add.add_argument(
        "--missed",
        choices=["skip", "catch_up"],
        default="skip",
        help="ticks missed while no scheduler ran: skip them (default) or catch up with one job",
    )
    add.add_argument("--priority", type=int, default=0, metavar="N", help="priority of its jobs (default 0)")
    for action, text in (
        ("remove", "delete a schedule (its jobs stay)"),
        ("pause", "stop making jobs until resumed"),
        ("resume", "make jobs again from the next tick"),
        ("run", "queue one job of the schedule now"),
    ):
        actions.add_parser(action, help=text).add_argument("name", metavar="NAME")
    for action_parser in actions.choices.values():
        _connection_options(action_parser, defaults=False)


async def _schedule(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    action = args.schedule_command
    if action == "add":
        schedule = await client.put_schedule(
            args.name,
            args.job_type,
            cron=args.cron,
            every=args.every,
            timezone=args.tz,
            request_data=_request_data(args.data),
            missed=args.missed,
            priority=args.priority,
        )
        result: Any = schedule
        text = f"schedule {schedule.name}: next run {_when(schedule.next_run_at)} UTC"
    elif action == "remove":
        await client.delete_schedule(args.name)
        result, text = {"deleted": args.name}, f"schedule {args.name} removed"
    elif action == "run":
        result = await client.run_schedule(args.name)
        text = result.id
    else:
        call = client.pause_schedule if action == "pause" else client.resume_schedule
        result = await call(args.name)
        text = f"schedule {args.name} {action}d" + (
            "" if result.paused else f": next run {_when(result.next_run_at)} UTC"
        )
    if args.json:
        _print_json(result, out)
    else:
        out.write(text + "\n")
    return EXIT_OK


# -- flow control per job type ---------------------------------------------------------------------

#: Seconds per unit of a rate period (``--rate 100/1m``).
_PERIOD_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _limit_value(raw: str) -> int | None:
    """A limit argument: a whole number, or ``none`` to clear the limit."""
    if raw.lower() == "none":
        return None
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or none, got {raw!r}") from None


def _rate_value(raw: str) -> tuple[int, float] | None:
    """``N/PERIOD`` (PERIOD: seconds, or a number with s, m, h or d, e.g. 100/1m), or ``none``."""
    if raw.lower() == "none":
        return None
    count, _, period = raw.partition("/")
    unit = _PERIOD_UNITS.get(period[-1:].lower()) if period else None
    number = period[:-1] if unit is not None else period
    try:
        return int(count), float(number or "1") * (unit or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N/PERIOD like 10/1s, 100/1m or 5/30, got {raw!r}") from None


def _configure_job_type(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_type", metavar="TYPE", help="the job type")


def _configure_limit(parser: argparse.ArgumentParser) -> None:
    _configure_job_type(parser)
    parser.add_argument(
        "--max-running", type=_limit_value, metavar="N|none", default=msgspec.UNSET,
        help="at most N jobs of the type running at once, across all workers",
    )
    parser.add_argument(
        "--max-running-per-key", type=_limit_value, metavar="N|none", default=msgspec.UNSET,
        help="at most N running per concurrency key (set at enqueue with --concurrency-key)",
    )
    parser.add_argument(
        "--rate", type=_rate_value, metavar="N/PERIOD|none", default=msgspec.UNSET,
        help="at most N starts in any window of PERIOD (30 = seconds, or 1s, 5m, 1h, 1d)",
    )


def _rate_text(controls: TypeControls) -> str:
    return "-" if controls.rate is None else f"{controls.rate.limit}/{controls.rate.period:g}s"


def _print_controls(items: list[TypeControls], out: TextIO) -> None:
    rows = [["TYPE", "STATE", "RUNNING", "WAITING", "MAX", "PER KEY", "RATE", "NEXT START"]]
    for item in items:
        waiting = item.by_status.get("queued", 0) + item.by_status.get("pending", 0)
        rows.append(
            [
                item.job_type,
                "paused" if item.paused else "active",
                str(item.running),
                str(waiting),
                "-" if item.max_running is None else str(item.max_running),
                "-" if item.max_running_per_key is None else str(item.max_running_per_key),
                _rate_text(item),
                "now" if item.next_start_at is None else _when(item.next_start_at),
            ]
        )
    _table(rows, out)


async def _types(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    items = await client.job_types()
    if args.json:
        _print_json(items, out)
    elif not items:
        out.write("no job types yet\n")
    else:
        _print_controls(items, out)
    return EXIT_OK


async def _show_controls(controls: TypeControls, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        _print_json(controls, out)
    else:
        _print_controls([controls], out)
    return EXIT_OK


async def _pause(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    return await _show_controls(await client.pause(args.job_type), args, out)


async def _resume(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    return await _show_controls(await client.resume(args.job_type), args, out)


async def _limit(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.max_running is msgspec.UNSET and args.max_running_per_key is msgspec.UNSET and args.rate is msgspec.UNSET:
        raise UsageError("give --max-running, --max-running-per-key or --rate (none clears one)")
    controls = await client.set_limits(
        args.job_type, max_running=args.max_running, max_running_per_key=args.max_running_per_key, rate=args.rate
    )
    return await _show_controls(controls, args, out)


#: Every client command: name -> how to parse it and how to run it.
CLIENT_COMMANDS: dict[str, ClientCommand] = {
    "enqueue": ClientCommand("queue a job and print its id", _configure_enqueue, _enqueue),
    "get": ClientCommand("show one job", _configure_job_id, _get),
    "list": ClientCommand("list jobs, newest first", _configure_list, _list),
    "stats": ClientCommand("job counts by status and mean timings", _configure_stats, _stats),
    "cancel": ClientCommand("cancel a job (a running one is stopped by its worker)", _configure_job_id, _cancel),
    "retry": ClientCommand("queue a failed or cancelled job again", _configure_job_id, _retry),
    "delete": ClientCommand("delete a finished job and its events", _configure_job_id, _delete),
    "schedules": ClientCommand("list the schedules of periodic jobs", _no_options, _schedules),
    "schedule": ClientCommand(
        "add (or replace), remove, pause, resume or run a schedule", _configure_schedule, _schedule
    ),
    "types": ClientCommand(
        "job types: paused or not, limits, running and waiting jobs, next allowed start",
        _no_options,
        _types,
    ),
    "pause": ClientCommand(
        "stop claiming jobs of a type in every worker (running ones finish)", _configure_job_type, _pause
    ),
    "resume": ClientCommand("claim jobs of a paused type again", _configure_job_type, _resume),
    "limit": ClientCommand(
        "set or clear a job type's concurrency and rate limits (none clears one)", _configure_limit, _limit
    ),
    "workers": ClientCommand("list the live worker pools and the job types none serves", _no_options, _workers),
    "enqueue-batch": ClientCommand(
        "queue many jobs in one request (JSON lines or a JSON array) and print their ids",
        _configure_enqueue_batch,
        _enqueue_batch,
    ),
    "retry-failed": ClientCommand("queue the failed jobs of a type again", _configure_bulk_type, _retry_failed),
    "cancel-waiting": ClientCommand("cancel the waiting jobs of a type", _configure_bulk_type, _cancel_waiting),
    "purge": ClientCommand("delete finished jobs (and their events) by status, type and age", _configure_purge, _purge),
}


def _connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--url, --api-key and --json. Without ``defaults`` (the actions of a command with actions,
    which accept them after the action too) an option left out does not override the command's."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default(os.environ.get("JOBQUEUE_URL") or DEFAULT_URL),
        help=f"the jobqueue server (default {DEFAULT_URL}) [env JOBQUEUE_URL]",
    )
    parser.add_argument(
        "--api-key",
        default=default(os.environ.get("JOBQUEUE_API_KEY")),
        help="API key sent as Authorization: Bearer (when the server asks for one) [env JOBQUEUE_API_KEY]",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print the API's JSON instead of text"
    )


def add_client_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], table: dict[str, ClientCommand] = CLIENT_COMMANDS
) -> None:
    """Add the client commands of ``table`` to the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, defaults=True)
    for name, command in table.items():
        sub = commands.add_parser(name, help=command.help, description=command.help, parents=[common])
        command.configure(sub)
        sub.set_defaults(client_command=command)


def run_client_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the parsed client command; returns the exit code. Errors are one line on stderr."""
    command: ClientCommand = args.client_command
    out = sys.stdout if out is None else out

    async def run() -> int:
        async with JobQueueClient(args.url, api_key=args.api_key) as client:
            return await command.run(client, args, out)

    try:
        return asyncio.run(run())
    except (ClientError, UsageError) as exc:
        print(f"jobqueue: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except httpx.InvalidURL as exc:
        print(f"jobqueue: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
