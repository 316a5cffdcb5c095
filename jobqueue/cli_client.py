"""Client commands of the CLI: ``jobqueue enqueue|get|list|stats|cancel|retry|delete`` (and,
in cli_follow.py, the live ones: ``wait|events|top|check``).

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
from jobqueue.models import Job, JobStatus

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
    else:
        _print_job(job, out)
    return EXIT_OK


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
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="jobs to show (default 20)")
    parser.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N (paging)")


async def _list(client: JobQueueClient, args: argparse.Namespace, out: TextIO) -> int:
    page = await client.list(
        status=args.status, job_type=args.job_type, worker_id=args.worker_id, limit=args.limit, offset=args.offset
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


#: Every client command: name -> how to parse it and how to run it.
CLIENT_COMMANDS: dict[str, ClientCommand] = {
    "enqueue": ClientCommand("queue a job and print its id", _configure_enqueue, _enqueue),
    "get": ClientCommand("show one job", _configure_job_id, _get),
    "list": ClientCommand("list jobs, newest first", _configure_list, _list),
    "stats": ClientCommand("job counts by status and mean timings", _configure_stats, _stats),
    "cancel": ClientCommand("cancel a job (a running one is stopped by its worker)", _configure_job_id, _cancel),
    "retry": ClientCommand("queue a failed or cancelled job again", _configure_job_id, _retry),
    "delete": ClientCommand("delete a finished job and its events", _configure_job_id, _delete),
}


def add_client_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], table: dict[str, ClientCommand] = CLIENT_COMMANDS
) -> None:
    """Add the client commands of ``table`` to the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("JOBQUEUE_URL") or DEFAULT_URL,
        help=f"the jobqueue server (default {DEFAULT_URL}) [env JOBQUEUE_URL]",
    )
    common.add_argument(
        "--api-key",
        default=os.environ.get("JOBQUEUE_API_KEY"),
        help="API key sent as Authorization: Bearer (when the server asks for one) [env JOBQUEUE_API_KEY]",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON instead of text")
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
