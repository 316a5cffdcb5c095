"""Command line: ``python -m jobqueue [serve|worker|migrate|prune|keys] [options]``.

Every option falls back to an environment variable (shown in ``--help``). Errors print one line
to stderr and exit non-zero; no traceback reaches the terminal for a mistake of the user's.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from jobqueue import __version__
from jobqueue.cli_client import CLIENT_COMMANDS, add_client_commands, run_client_command
from jobqueue.cli_follow import FOLLOW_COMMANDS
from jobqueue.errors import ConfigError, JobQueueError
from jobqueue.models import KeyScope
from jobqueue.settings import Settings, load_settings

logger = logging.getLogger("jobqueue")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="database: sqlite:///./jobs.db (relative), sqlite:////abs/jobs.db or postgresql://user@host/db [env DATABASE_URL]",
    )
    parser.add_argument(
        "--redis-url", metavar="URL", help="Redis for cross-process events, optional [env REDIS_URL]"
    )
    parser.add_argument(
        "--database-pooling",
        metavar="MODE",
        help="PostgreSQL: session (default) or transaction behind PgBouncer [env DATABASE_POOLING]",
    )
    parser.add_argument(
        "--synchronous",
        metavar="MODE",
        help="SQLite synchronous: NORMAL (default) or FULL [env SQLITE_SYNCHRONOUS]",
    )
    # choices: uvicorn raises a KeyError traceback for a level it does not know.
    parser.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=["trace", "debug", "info", "warning", "error"],
        help="debug, info, warning or error (default info); trace is debug with the database, Redis "
        "and HTTP libraries' own debug lines too",
    )


def _pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency", metavar="N", help="jobs run at once by the pool (default 10) [env WORKER_CONCURRENCY]"
    )
    parser.add_argument(
        "--job-types",
        metavar="A,B",
        help="only claim these job types (default: every registered type) [env WORKER_JOB_TYPES]",
    )
    parser.add_argument(
        "--registry",
        metavar="MODULE:ATTR",
        default=os.environ.get("WORKER_REGISTRY"),
        help="a jobqueue.worker.Registry with your handlers; the pool claims only its types [env WORKER_REGISTRY]",
    )
    parser.add_argument(
        "--with-examples",
        action="store_true",
        help="with --registry, also claim the example types (generation)",
    )
    parser.add_argument(
        "--lease-seconds", metavar="S", help="claim lease without heartbeat (default 30) [env LEASE_SECONDS]"
    )
    parser.add_argument(
        "--poll-interval",
        metavar="S",
        help="seconds between checks for work from other processes (default 0.5) [env POLL_INTERVAL]",
    )
    parser.add_argument(
        "--shutdown-grace",
        metavar="S",
        help="seconds running jobs get to finish on SIGTERM before they are handed back (default 10) "
        "[env SHUTDOWN_GRACE]",
    )


def _process_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_PROCESSES}, got {value!r}")
    return count


#: Most processes ``--workers`` / ``--processes`` starts: a typo (200 for 20) should not fork-bomb.
MAX_PROCESSES = 64


def _child_options(parser: argparse.ArgumentParser) -> None:
    """What the supervisor tells a child of ``--workers`` / ``--processes``; not for people."""
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobqueue",
        description="A durable async job queue: REST API, worker pools, SQLite or PostgreSQL storage. "
        "Without a command, runs `serve`.",
    )
    parser.add_argument("--version", action="version", version=f"jobqueue {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API (and, by default, a worker pool)")
    _common(serve)
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1) [env HOST]")
    serve.add_argument("--port", help="port to listen on (default 8000) [env PORT]")
    serve.add_argument(
        "--allowed-hosts",
        metavar="A,B",
        help="host names the API answers to (default: loopback names and --host) [env ALLOWED_HOSTS]",
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not run a worker pool inside the server [env RUN_WORKER=false]",
    )
    serve.add_argument(
        "--workers",
        type=_process_count,
        metavar="N",
        default=os.environ.get("SERVE_WORKERS", "1"),
        help="API processes sharing the listening socket, under one supervisor; the worker pool "
        "runs in the first only (default 1) [env SERVE_WORKERS]",
    )
    serve.add_argument("--debug", action="store_true", help="tracebacks in error responses [env DEBUG]")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="listen on a non-loopback address although no API key exists: the API is open to "
        "anyone who reaches it until a key is created [env JOBQUEUE_INSECURE_NO_AUTH]",
    )
    _pool_options(serve)
    _child_options(serve)

    worker = commands.add_parser("worker", help="run a worker pool in this process (or in several)")
    _common(worker)
    _pool_options(worker)
    _child_options(worker)
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    worker.add_argument(
        "--processes",
        type=_process_count,
        metavar="N",
        default=os.environ.get("WORKER_PROCESSES", "1"),
        help="worker processes under one supervisor, each a pool of --concurrency jobs; a child "
        "that dies is restarted (default 1) [env WORKER_PROCESSES]",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        default=os.environ.get("WORKER_METRICS_PORT"),
        help="serve Prometheus metrics on this port (on --host / HOST) [env WORKER_METRICS_PORT]",
    )

    migrate = commands.add_parser("migrate", help="apply pending database migrations and exit")
    _common(migrate)

    prune = commands.add_parser("prune", help="delete finished jobs past their retention, then exit")
    _common(prune)
    prune.add_argument(
        "--completed-days",
        "--retention-completed-days",
        dest="completed_days",
        action=_TypedFlag,
        metavar="D",
        help="keep completed jobs this many days (default 7) [env RETENTION_COMPLETED_DAYS]",
    )
    prune.add_argument(
        "--failed-days",
        "--retention-failed-days",
        dest="failed_days",
        action=_TypedFlag,
        metavar="D",
        help="keep failed and cancelled jobs this many days (default 30) [env RETENTION_FAILED_DAYS]",
    )

    _key_commands(commands)
    add_client_commands(commands, {**CLIENT_COMMANDS, **FOLLOW_COMMANDS})
    return parser


class _TypedFlag(argparse.Action):
    """Stores the value and the option string the user typed (of a flag with aliases), so an
    error about the value names the flag as it was written."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        setattr(namespace, self.dest, values)
        typed = dict(getattr(namespace, "typed_flags", {}))
        typed[self.dest] = option
        namespace.typed_flags = typed


def _key_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database-url", metavar="URL", help="the database [env DATABASE_URL]")
    keys = commands.add_parser(
        "keys", help="create, list and revoke API keys (on the database, like migrate)"
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", parents=[database], help="create a key and print it, only it, on stdout (shown once)"
    )
    create.add_argument("--name", required=True, help="a name for the key, unique among keys in use")
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        choices=[s.value for s in KeyScope],
        help="what the key may do (repeat for several): admin, enqueue, worker, read",
    )
    create.add_argument(
        "--job-type",
        dest="key_job_types",
        action="append",
        metavar="T",
        help="limit the key to this job type (repeat for several; default: every type)",
    )
    listing = actions.add_parser("list", parents=[database], help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    revoke = actions.add_parser("revoke", parents=[database], help="revoke a key at once, in every process")
    revoke.add_argument("key", metavar="NAME_OR_ID")


def _settings(args: argparse.Namespace) -> Settings:
    flags = ("database_url", "database_pooling", "redis_url", "synchronous", "host", "port", "concurrency", "job_types",
             "lease_seconds", "poll_interval", "shutdown_grace")
    overrides: dict[str, str | None] = {f: getattr(args, f, None) for f in flags}
    overrides["retention_completed_days"] = getattr(args, "completed_days", None)
    overrides["retention_failed_days"] = getattr(args, "failed_days", None)
    typed = getattr(args, "typed_flags", {})
    names = {"retention_completed_days": typed.get("completed_days"), "retention_failed_days": typed.get("failed_days")}
    overrides["allowed_hosts"] = getattr(args, "allowed_hosts", None)
    if getattr(args, "no_worker", False):
        overrides["run_worker"] = "false"
    if getattr(args, "debug", False):
        overrides["debug"] = "true"
    if getattr(args, "insecure_no_auth", False):
        overrides["insecure_no_auth"] = "true"
    return load_settings(overrides=overrides, names={k: v for k, v in names.items() if v})


def check_job_types(settings: Settings, registry: Any) -> None:
    """``ConfigError`` (one line) when ``--job-types`` names a type the registry has no handler
    for: the pool would refuse it with a ValueError."""
    missing = [t for t in settings.job_types or () if t not in registry.handlers]
    if missing:
        raise ConfigError(
            f"--job-types/WORKER_JOB_TYPES: no handler registered for {', '.join(missing)} "
            f"(this worker handles {', '.join(registry.handlers) or 'nothing'}); add one with --registry MODULE:ATTR"
        )


def _load_registry(spec: str | None, with_examples: bool = False) -> Any:
    """The example handlers, or the registry named by ``spec`` (plus the examples only when
    asked): a user's worker must not claim ``generation`` jobs it was never meant to run."""
    from jobqueue.handlers import default_registry
    from jobqueue.worker import Registry

    examples = default_registry()
    if not spec:
        return examples
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        extra = getattr(module, attr or "registry")
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load registry {spec!r}: {exc}") from None
    if not isinstance(extra, Registry):
        raise ConfigError(f"cannot load registry {spec!r}: it is a {type(extra).__name__}, not a jobqueue Registry")
    registry = Registry()
    registry.merge(extra)
    if with_examples:
        registry.merge(examples)
    else:
        # Not claimed, but a server still validates the examples' request data (/api/generate).
        for job_type, request_type in examples.request_types.items():
            registry.request_types.setdefault(job_type, request_type)
    return registry


async def _migrate(settings: Settings) -> int:
    from jobqueue.storage import open_store

    async with open_store(settings, migrate=False) as store:
        return len(await store.migrate())


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    import msgspec

    from jobqueue.keys import create_key
    from jobqueue.models import ApiKeyCreate
    from jobqueue.storage import open_store

    async with open_store(settings) as store:
        if args.keys_command == "create":
            try:
                request = msgspec.convert(
                    {"name": args.name, "scopes": args.scopes, "job_types": args.key_job_types}, ApiKeyCreate
                )
            except msgspec.ValidationError as exc:
                raise ConfigError(f"invalid key: {exc}") from None
            created = await create_key(store, request.name, request.scopes, request.job_types)
            print(created.key)  # only the key, so `KEY=$(jobqueue keys create ...)` works
        elif args.keys_command == "list":
            keys = await store.list_api_keys()
            if args.json:
                print(msgspec.json.format(msgspec.json.encode(keys), indent=2).decode())
            else:
                _print_keys(keys)
        else:
            revoked = await store.revoke_api_key(args.key)
            print(f"key {revoked.name} ({revoked.id}) revoked")
    return 0


def _print_keys(keys: list[Any]) -> None:
    if not keys:
        print("no API keys: authentication is off on loopback (jobqueue keys create --name NAME --scope admin)")
        return

    def when(value: Any) -> str:
        return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")

    rows = [["ID", "NAME", "SCOPES", "JOB TYPES", "CREATED", "LAST USED", "REVOKED"]]
    for key in keys:
        rows.append(
            [
                key.id,
                key.name,
                ",".join(s.value for s in key.scopes),
                "*" if key.job_types is None else ",".join(key.job_types),
                when(key.created_at),
                when(key.last_used_at),
                when(key.revoked_at),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


async def _any_key(settings: Settings) -> bool:
    from jobqueue.storage import open_store

    async with open_store(settings, migrate=False) as store:
        return await store.any_api_key()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def auth_banner(settings: Settings, any_key: bool) -> str:
    """The start-up line about authentication; ``ConfigError`` (one line) when the server would
    listen beyond loopback with nobody asked for a key and no explicit ``--insecure-no-auth``."""
    where = f"{settings.host}:{settings.port}"
    if settings.admin_key is not None or any_key:
        source = "JOBQUEUE_ADMIN_KEY and API keys" if any_key and settings.admin_key else (
            "JOBQUEUE_ADMIN_KEY" if settings.admin_key else "API keys"
        )
        return f"authentication is on ({source}): every request but /health needs a key"
    if not is_loopback(settings.host) and not settings.insecure_no_auth:
        raise ConfigError(
            f"refusing to listen on {where} without authentication: create a key "
            "(jobqueue keys create --name admin --scope admin), set JOBQUEUE_ADMIN_KEY, "
            "or pass --insecure-no-auth"
        )
    return (
        f"authentication is OFF: no API key exists, so anyone who reaches {where} may do anything "
        "until one is created (jobqueue keys create --name admin --scope admin)"
    )


async def _prune(settings: Settings) -> int:
    from jobqueue.service import JobQueueService

    async with JobQueueService.open(settings) as service:
        return await service.prune(
            completed_older_than=settings.retention_completed_days * 86_400,
            failed_older_than=settings.retention_failed_days * 86_400,
        )


async def _run_worker(settings: Settings, registry: Any, burst: bool, metrics_port: int | None = None) -> None:
    from jobqueue.scheduler import Scheduler
    from jobqueue.service import JobQueueService
    from jobqueue.worker import Reaper, WorkerPool

    check_job_types(settings, registry)
    async with JobQueueService.open(settings) as service:
        pool = WorkerPool(service, registry, job_types=settings.job_types)
        await service.declare_schedules(registry.schedules)
        if metrics_port is not None:
            _serve_worker_metrics(service, pool, settings.host, metrics_port)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, pool.stop)
        background = [
            asyncio.create_task(Reaper(service).run(), name="jobqueue-reaper"),
            asyncio.create_task(Scheduler(service).run(), name="jobqueue-scheduler"),
        ]
        logger.info(
            "worker %s: concurrency %d, job types %s; database %s, Redis %s",
            pool.worker_id,
            pool.concurrency,
            ",".join(pool.job_types),
            settings.database_name,
            redact_password(settings.redis_url) if settings.redis_url else "not configured",
        )
        try:
            await pool.run(burst=burst)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        logger.info("worker %s stopped after %d jobs", pool.worker_id, pool.processed)


def _serve_worker_metrics(service: Any, pool: Any, host: str, port: int) -> None:
    """Serve this worker's metrics in a daemon thread (prometheus_client's own HTTP server)."""
    from prometheus_client import start_http_server

    from jobqueue.metrics import JobMetrics

    if not is_loopback(host):
        # prometheus_client's server has no authentication: secure by default, it stays local.
        raise ConfigError(
            f"--metrics-port: the worker's metrics have no authentication and {host} is not a loopback "
            "address; keep HOST on 127.0.0.1 (scrape through a local agent) or scrape the API's "
            "/metrics with METRICS_TOKEN"
        )
    metrics = JobMetrics(queue_depth=False)
    metrics.attach(service)
    metrics.track_pool(pool)
    try:
        start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise ConfigError(f"--metrics-port {port}: cannot listen on {host}:{port}: {exc.strerror}") from None
    logger.info("worker metrics on http://%s:%d/metrics", host, port)


T = TypeVar("T")


def _run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed, as the server runs under uvicorn.

    uvicorn[standard] brings uvloop. On the stock loop a worker processed 5.4k instead of 6.1k
    no-op jobs/s, and an idle round trip took 1.72 instead of 1.57 ms (benchmarks/README.md).
    Without uvloop (Windows, PyPy) the stock loop runs.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _serve(settings: Settings, registry: Any, log_level: str, child: int | None = None, listen_fd: int | None = None) -> None:
    import msgspec
    import uvicorn

    from jobqueue.api.app import create_app
    from jobqueue.api.protocol import UVICORN_HTTP_OPTIONS

    if child is None:
        # Fail fast with one line (bad file, migration refused, no key) before uvicorn starts
        # logging. A child of --workers: its supervisor did this once for all of them.
        _check_and_announce(settings, registry)
    elif child > 0:
        # One pool and one retention loop for the whole server, in the first process, as with
        # --workers 1: WORKER_CONCURRENCY keeps its meaning, and processing scales with
        # `jobqueue worker --processes N` instead, away from the API's event loops.
        settings = msgspec.structs.replace(settings, run_worker=False, prune_interval=0)
    app = create_app(settings, registry=registry)
    options: dict[str, Any] = {
        "log_level": "debug" if settings.debug and log_level != "trace" else log_level,
        "timeout_graceful_shutdown": int(settings.shutdown_grace) + 5,
        **UVICORN_HTTP_OPTIONS,
    }
    if listen_fd is None:
        uvicorn.run(app, host=settings.host, port=settings.port, **options)
    else:
        uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[socket.socket(fileno=listen_fd)])


def _listen(settings: Settings) -> socket.socket:
    """The socket every child of ``serve --workers`` accepts on, bound once here."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        # uvicorn's own backlog: connections wait in the kernel, not refused, while children are busy.
        return socket.create_server((settings.host, settings.port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None


def _child_command(argv: list[str], index: int, *extra: str) -> list[str]:
    # The parent's own options, then the single-process ones: argparse keeps the last value given.
    return [sys.executable, "-m", "jobqueue", *argv, "--child", str(index), *extra]


def _check_and_announce(settings: Settings, registry: Any) -> None:
    if settings.run_worker:
        check_job_types(settings, registry)
    _run(_migrate(settings))
    banner = auth_banner(settings, _run(_any_key(settings)))
    logger.info(serve_banner(settings, registry))
    logger.log(logging.WARNING if banner.startswith("authentication is OFF") else logging.INFO, banner)


def _supervise_serve(settings: Settings, registry: Any, argv: list[str], count: int) -> int:
    from jobqueue.supervisor import Supervisor

    _check_and_announce(settings, registry)
    listener = _listen(settings)
    fd = listener.fileno()
    logger.info(
        "serving on http://%s:%d with %d processes%s",
        settings.host, settings.port, count, "; the worker pool runs in process 0" if settings.run_worker else "",
    )  # fmt: skip
    commands = [_child_command(argv, i, "--workers", "1", "--listen-fd", str(fd)) for i in range(count)]
    try:
        return Supervisor("server", commands, pass_fds=[fd], restart_clean_exit=True).run()
    finally:
        listener.close()


def _supervise_workers(settings: Settings, argv: list[str], count: int, burst: bool) -> int:
    from jobqueue.supervisor import Supervisor

    _run(_migrate(settings))  # once, and a bad database is one line before any child starts
    commands = [_child_command(argv, i, "--processes", "1") for i in range(count)]
    return Supervisor("worker", commands, restart_clean_exit=not burst).run()


def redact_password(url: str) -> str:
    """A URL with its password (if any) replaced by ``***``, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def serve_banner(settings: Settings, registry: Any) -> str:
    """The server's start-up line: where it listens, its database and Redis (no passwords), its
    worker pool, and the URLs of the pages."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base = f"http://{host}:{settings.port}"
    redis = redact_password(settings.redis_url) if settings.redis_url else "not configured"
    if settings.run_worker:
        types = settings.job_types or tuple(registry.handlers)
        pool = f"worker pool of {settings.concurrency} for {','.join(types)}"
    else:
        pool = "no worker pool"
    return (
        f"jobqueue {__version__} on {settings.host}:{settings.port}: database {settings.database_name}, "
        f"Redis {redis}, {pool}; dashboard {base}/dashboard, API docs {base}/docs"
    )


#: Libraries whose own debug lines (each query, frame or connection) drown jobqueue's under
#: ``--log-level debug``: they stay at INFO unless ``--log-level trace`` asks for them too.
CHATTY_LOGGERS = ("aiosqlite", "asyncpg", "httpx", "httpcore", "redis", "hpack", "multipart")
#: Exit code after stdout's reader went away (``jobqueue get ID | head``): 128 + SIGPIPE, what a
#: shell reports for a program that SIGPIPE ended.
EXIT_BROKEN_PIPE = 141


def configure_logging(level_name: str, child: int | None = None) -> None:
    level = logging.DEBUG if level_name == "trace" else getattr(logging, level_name.upper(), logging.INFO)
    # A child of --workers / --processes says which one it is: their lines interleave.
    tag = "" if child is None else f"[{child}]"
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s")
    if level_name != "trace":
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(max(logging.INFO, level))


def main(argv: Sequence[str] | None = None) -> int:
    """The ``jobqueue`` command. A reader that stops reading (``| head``) ends it quietly."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here rather than in the flush at exit
    except BrokenPipeError:
        # What Python's documentation of SIGPIPE advises: point stdout at devnull so the flush
        # at exit cannot fail again, and leave without a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "serve")  # no command: serve, with the options given
    args = parser.parse_args(argv)
    command = args.command
    if getattr(args, "client_command", None) is not None:
        return run_client_command(args)
    child = getattr(args, "child", None)
    configure_logging(str(getattr(args, "log_level", "warning")), child)
    try:
        settings = _settings(args)
        if command == "migrate":
            count = _run(_migrate(settings))
            print(f"applied {count} migration(s); database {settings.database_name} is up to date")
        elif command == "prune":
            count = _run(_prune(settings))
            print(
                f"pruned {count} finished job(s): completed older than "
                f"{settings.retention_completed_days:g} days, failed or cancelled older than "
                f"{settings.retention_failed_days:g} days"
            )
        elif command == "keys":
            return _run(_keys(settings, args))
        elif command == "worker":
            registry = _load_registry(args.registry, args.with_examples)
            if args.processes > 1:
                if args.metrics_port is not None:
                    raise ConfigError(
                        "--metrics-port serves one process's metrics: with --processes, scrape the "
                        "API's /metrics, or run the worker processes separately, one port each"
                    )
                return _supervise_workers(settings, argv, args.processes, args.burst)
            _run(_run_worker(settings, registry, args.burst, args.metrics_port))
        elif args.workers > 1:
            return _supervise_serve(settings, _load_registry(args.registry, args.with_examples), argv, args.workers)
        else:
            _serve(settings, _load_registry(args.registry, args.with_examples), args.log_level, child, args.listen_fd)
    except JobQueueError as exc:
        print(f"jobqueue: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
