"""The databases a benchmark run works on: SQLite files in the work folder, or databases of their
own on a PostgreSQL server, created for one scenario step and dropped after it.

On PostgreSQL every database the run creates is named ``jobqueue_bench_<random hex>``, and the
run drops only the names it created (tracked here): another database of the server is never
touched. The admin connection (``POSTGRES_BENCH_URL``) is only used to create and drop them.
The reads here (counts, timing windows) are the benchmark's own measurement, not product SQL.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKENDS = ("sqlite", "postgresql")
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_URL = os.environ.get("POSTGRES_BENCH_URL", DEFAULT_ADMIN_URL)
#: Every database the run creates starts with this; nothing else is ever dropped.
NAME_PREFIX = "jobqueue_bench_"


@dataclass(frozen=True)
class Database:
    """One database of a scenario step: its URL (``sqlite:///`` or ``postgresql://``)."""

    backend: str
    url: str
    #: The SQLite file, or None on PostgreSQL.
    path: Path | None = None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """One value of a read written for this backend (placeholders: ``?`` / ``%s``)."""
        row = self.row(sql, params)
        return None if row is None else row[0]

    def row(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        if self.backend == "sqlite":
            assert self.path is not None
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                return conn.execute(sql, params).fetchone()  # type: ignore[no-any-return]
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchone()

    def execute(self, sql: str) -> None:
        """A statement without result (PostgreSQL only: ``ANALYZE`` of a peer's database)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql)

    def completed_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM jobs WHERE status = 'completed'"))

    def processing_window(self) -> tuple[float, float, int]:
        """First claim, last completion (epoch seconds) and completed count, from the jobs table."""
        if self.backend == "sqlite":
            sql = "SELECT min(started_at), max(completed_at), count(*) FROM jobs WHERE status = 'completed'"
        else:
            sql = (
                "SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(completed_at)), count(*) "
                "FROM jobs WHERE status = 'completed'"
            )
        row = self.row(sql)
        assert row is not None and row[0] is not None, "no completed job"
        return float(row[0]), float(row[1]), int(row[2])


def _with_dbname(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Databases:
    """Creates the run's databases of one backend and removes them (on PostgreSQL: only the
    ones it created, by name)."""

    def __init__(self, backend: str, workdir: Path, admin_url: str = ADMIN_URL) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}")
        self.backend = backend
        self.workdir = workdir
        self.admin_url = admin_url

    def check(self) -> str | None:
        """Why this backend cannot run here (None: it can)."""
        if self.backend == "sqlite":
            return None
        try:
            import psycopg
        except ImportError:
            return "psycopg is not installed (pip install -e '.[bench]')"
        try:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return f"cannot reach PostgreSQL at {redacted(self.admin_url)}: {exc}"
        return None

    def server_settings(self) -> dict[str, str]:
        """What shapes PostgreSQL's figures (durability, vacuum, version), for the report."""
        if self.backend == "sqlite":
            return {}
        import psycopg

        names = ("server_version", "synchronous_commit", "fsync", "autovacuum", "shared_buffers", "wal_level")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in names}  # type: ignore[index]

    @contextmanager
    def create(self, label: str) -> Iterator[Database]:
        """A new empty database for one step (``label`` names the SQLite file), removed after."""
        if self.backend == "sqlite":
            path = self.workdir / f"{label}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            try:
                yield Database("sqlite", f"sqlite:///{path}", path)
            finally:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            return
        import psycopg
        from psycopg import sql

        name = NAME_PREFIX + secrets.token_hex(6)
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield Database("postgresql", _with_dbname(self.admin_url, name))
        finally:
            with psycopg.connect(self.admin_url, autocommit=True) as admin:
                # FORCE: a child killed mid-run may still hold a connection.
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
