"""Configuration from the environment, validated once at start-up.

Every setting has an environment variable and a CLI flag (the flag wins). A bad value raises
``ConfigError`` with one line naming the variable, which the CLI prints instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec

from jobqueue.errors import ConfigError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    #: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
    #: ``postgresql://user:password@host:port/dbname``.
    database_url: str = "sqlite:///./jobs.db"
    #: ``redis://host:port/db``; None runs without Redis (events stay in-process + database).
    redis_url: str | None = None
    debug: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    #: Host names the API answers to (the Host header), against DNS rebinding: ``*.example.com``
    #: matches its subdomains, ``*`` any name. Empty: the loopback names and ``host``
    #: (``api.hosts.trusted_hosts``).
    allowed_hosts: tuple[str, ...] = ()
    #: Run a worker pool inside the server process (so one command processes jobs).
    run_worker: bool = True
    #: Jobs one pool runs at once.
    concurrency: int = 10
    #: Job types the pool claims; None claims every type it has a handler for.
    job_types: tuple[str, ...] | None = None
    #: Seconds a claim stays valid without a heartbeat.
    lease_seconds: float = 30.0
    #: Seconds between checks for new work from other processes when Redis is not configured.
    poll_interval: float = 0.5
    #: Attempts a job gets unless its enqueue says otherwise.
    default_max_attempts: int = 3
    #: Seconds before the first retry of a failed attempt; doubles with each attempt (jittered).
    retry_base_delay: float = 1.0
    #: Seconds a draining pool waits for running jobs on SIGTERM before handing them back.
    shutdown_grace: float = 10.0
    #: Days a completed job (and its events) is kept after it finished.
    retention_completed_days: float = 7.0
    #: Days a failed or cancelled job is kept after it finished (longer: someone may look into it).
    retention_failed_days: float = 30.0
    #: Seconds between retention runs in the server (0 turns them off).
    prune_interval: float = 3600.0
    #: Seconds between keep-alive comments on an idle event stream.
    sse_keepalive: float = 15.0
    #: Event streams (SSE) open at once in one server process; more are refused with 503.
    max_streams: int = 4096
    #: Event streams one client (remote address) may have open at once; more are refused with 429.
    max_streams_per_client: int = 64
    #: SQLite ``PRAGMA synchronous``: NORMAL (default, durable across process crashes in WAL mode;
    #: the last commits may be lost on power loss) or FULL (fsync on every commit).
    synchronous: str = "NORMAL"
    #: ``session`` (a direct PostgreSQL connection) or ``transaction``: DATABASE_URL points at
    #: a pooler in transaction mode (PgBouncer), where LISTEN and prepared statements do not
    #: work; other processes' events then come from polling only.
    database_pooling: str = "session"
    #: Connections of one process's PostgreSQL pool.
    database_pool_size: int = 10
    #: A bootstrap admin key from the environment (compose, CI): compared in constant time,
    #: never stored. Setting it turns authentication on.
    admin_key: str | None = None
    #: A token that may read ``/metrics`` and nothing else (a Prometheus scraper), besides any
    #: key with the ``read`` scope.
    metrics_token: str | None = None
    #: Serve on an address other than loopback while no key exists (the API is open to anyone
    #: who can reach it until the first key is created).
    insecure_no_auth: bool = False

    def __repr__(self) -> str:
        # Secrets stay out of logs and tracebacks.
        fields = ", ".join(
            f"{f}={'***' if f in SECRET_SETTINGS and getattr(self, f) else repr(getattr(self, f))}"
            for f in self.__struct_fields__
        )
        return f"Settings({fields})"

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``, from the URL's scheme."""
        return database_backend(self.database_url)

    @property
    def database_path(self) -> Path:
        return database_path(self.database_url)

    @property
    def database_name(self) -> str:
        """The database for messages: the SQLite file, or the PostgreSQL URL without password."""
        if self.backend == "sqlite":
            return str(self.database_path)
        return redact_url(self.database_url)


def redact_url(url: str) -> str:
    """A database URL without its password."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


#: Settings whose values are secrets.
SECRET_SETTINGS = frozenset({"admin_key", "metrics_token"})
#: Fewest characters of a secret given in the environment (32 random bytes make 43).
MIN_SECRET_LENGTH = 32

#: URL schemes of each backend.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def database_backend(url: str) -> str:
    if url.startswith(POSTGRES_SCHEMES):
        return "postgresql"
    if url.startswith("sqlite:///"):
        return "sqlite"
    raise ConfigError(
        "DATABASE_URL must look like sqlite:///./jobs.db, sqlite:////abs/jobs.db or "
        f"postgresql://user@host:5432/dbname, got {url!r}"
    )


def database_path(url: str) -> Path:
    """The file path of a ``sqlite:///`` URL. Four slashes make an absolute path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(
            f"DATABASE_URL must look like sqlite:///./jobs.db or sqlite:////abs/jobs.db, got {url!r}"
        )
    path = url[len(prefix) :]
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigError(
            f"DATABASE_URL must name a database file (several connections share it), got {url!r}"
        )
    return Path(path)


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _parse_number(kind: Callable[[str], T], low: float, high: float) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise ConfigError(f"{name} must be {noun}, got {raw!r}") from None
        if not low <= value <= high:  # type: ignore[operator]
            raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
        return value

    return parse


def _parse_types(name: str, raw: str) -> tuple[str, ...] | None:
    types = tuple(t.strip() for t in raw.split(",") if t.strip())
    return types or None


def _parse_hosts(name: str, raw: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for host in hosts:
        if "*" in host[1:] or (host.startswith("*") and host != "*" and not host.startswith("*.")):
            raise ConfigError(f"{name}: a wildcard must be * or lead a domain, as in *.example.com; got {host!r}")
    return hosts


def _parse_synchronous(name: str, raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"NORMAL", "FULL", "EXTRA"}:
        raise ConfigError(f"{name} must be NORMAL, FULL or EXTRA, got {raw!r}")
    return value


def _parse_redis(name: str, raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{name} must start with redis://, rediss:// or unix://, got {raw!r}")
    return value


def _parse_database(name: str, raw: str) -> str:
    if database_backend(raw) == "sqlite":
        database_path(raw)
    return raw


def _parse_secret(name: str, raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{name} must be at least {MIN_SECRET_LENGTH} characters; make one with "
            f"python3 -c 'import secrets; print(secrets.token_urlsafe(32))' (got {len(value)})"
        )
    return value


def _parse_pooling(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"session", "transaction"}:
        raise ConfigError(f"{name} must be session or transaction, got {raw!r}")
    return value


#: field name -> (environment variable, parser)
ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "database_url": ("DATABASE_URL", _parse_database),
    "redis_url": ("REDIS_URL", _parse_redis),
    "debug": ("DEBUG", _parse_bool),
    "host": ("HOST", lambda name, raw: raw),
    "port": ("PORT", _parse_number(int, 0, 65535)),
    "allowed_hosts": ("ALLOWED_HOSTS", _parse_hosts),
    "run_worker": ("RUN_WORKER", _parse_bool),
    "concurrency": ("WORKER_CONCURRENCY", _parse_number(int, 1, 10_000)),
    "job_types": ("WORKER_JOB_TYPES", _parse_types),
    "lease_seconds": ("LEASE_SECONDS", _parse_number(float, 0.2, 86_400)),
    "poll_interval": ("POLL_INTERVAL", _parse_number(float, 0.01, 60)),
    "default_max_attempts": ("DEFAULT_MAX_ATTEMPTS", _parse_number(int, 1, 1000)),
    "retry_base_delay": ("RETRY_BASE_DELAY", _parse_number(float, 0, 3600)),
    "shutdown_grace": ("SHUTDOWN_GRACE", _parse_number(float, 0, 3600)),
    "synchronous": ("SQLITE_SYNCHRONOUS", _parse_synchronous),
    "retention_completed_days": ("RETENTION_COMPLETED_DAYS", _parse_number(float, 0, 36_500)),
    "retention_failed_days": ("RETENTION_FAILED_DAYS", _parse_number(float, 0, 36_500)),
    "sse_keepalive": ("SSE_KEEPALIVE", _parse_number(float, 0.05, 3600)),
    "max_streams": ("MAX_STREAMS", _parse_number(int, 1, 1_000_000)),
    "max_streams_per_client": ("MAX_STREAMS_PER_CLIENT", _parse_number(int, 1, 1_000_000)),
    "prune_interval": ("PRUNE_INTERVAL", _parse_number(float, 0, 7 * 86_400)),
    "database_pooling": ("DATABASE_POOLING", _parse_pooling),
    "database_pool_size": ("DATABASE_POOL_SIZE", _parse_number(int, 2, 1000)),
    "admin_key": ("JOBQUEUE_ADMIN_KEY", _parse_secret),
    "metrics_token": ("METRICS_TOKEN", _parse_secret),
    "insecure_no_auth": ("JOBQUEUE_INSECURE_NO_AUTH", _parse_bool),
}


def load_settings(
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str | None] | None = None,
    names: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from ``env`` (default ``os.environ``), then string ``overrides`` (CLI flags).

    An error about an override names its flag: ``names[field]`` when given (the option as the
    user typed it), else ``--field-name``."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for field, (variable, parse) in ENVIRONMENT.items():
        raw = env.get(variable)
        name = variable
        if overrides is not None and overrides.get(field) is not None:
            raw = overrides[field]
            name = (names or {}).get(field) or "--" + field.replace("_", "-")
        if raw is not None:
            values[field] = parse(name, raw)
    return Settings(**values)
