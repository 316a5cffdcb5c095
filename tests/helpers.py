"""Helpers shared by the test modules: waiting for a condition, and reaching a test's database
behind the service's back on every backend.

Tests read stored rows here to check what the store really wrote (an event row per change, the
events gone with a pruned job), and change rows the service has no operation for (the clock of a
finished job, a table an operator dropped). One statement per helper and per backend: the
dialects differ in placeholders (``?`` and ``%s``) and in time (SQLite stores epoch seconds,
PostgreSQL ``timestamptz``). Each call opens its own connection, as another process would.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from typing import Any
from urllib.parse import urlsplit

from jobqueue.settings import database_backend, database_path

#: Seconds ``wait_until`` waits by default: generous, two shared cores can stall a process.
WAIT_CEILING = 45.0


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = WAIT_CEILING
) -> None:
    """Check ``condition`` (plain or async) until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


#: A statement written once for both backends, or once per backend where the dialects differ.
Statement = str | Mapping[str, str]


@contextmanager
def _cursor(database_url: str) -> Iterator[Any]:
    """A DB-API cursor on the database, in autocommit mode: each statement commits at once."""
    if database_backend(database_url) == "sqlite":
        with closing(sqlite3.connect(database_path(database_url), isolation_level=None)) as conn:
            conn.row_factory = sqlite3.Row
            yield conn.cursor()
        return
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as pg:
        yield pg.cursor()


def run_sql(database_url: str, statement: Statement, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Run one statement (the backend's own text when ``statement`` is a mapping) and return
    its rows as dicts."""
    if not isinstance(statement, str):
        statement = statement[database_backend(database_url)]
    with _cursor(database_url) as cursor:
        # Without parameters the text goes as written (psycopg would read a % as a placeholder).
        if params:
            cursor.execute(statement, params)
        else:
            cursor.execute(statement)
        if cursor.description is None:
            return []
        return [dict(row) for row in cursor.fetchall()]


def stored_events(database_url: str) -> list[dict[str, Any]]:
    """Every row of ``job_events``, in id order."""
    return run_sql(database_url, "SELECT id, job_id, seq, kind, status, progress, message FROM job_events ORDER BY id")


def count_rows(database_url: str, table: str) -> int:
    """How many rows ``table`` (one of the schema's tables, never user input) holds."""
    return int(run_sql(database_url, f"SELECT count(*) AS n FROM {table}")[0]["n"])


def applied_versions(database_url: str) -> list[int]:
    """The versions ``schema_migrations`` records, in order."""
    return [row["version"] for row in run_sql(database_url, "SELECT version FROM schema_migrations ORDER BY version")]


def set_completed_at(database_url: str, job_id: str, epoch: float) -> None:
    """Pretend the job finished at ``epoch`` (the clock is the only thing retention tests fake)."""
    run_sql(
        database_url,
        {
            "sqlite": "UPDATE jobs SET completed_at = ? WHERE id = ?",
            "postgresql": "UPDATE jobs SET completed_at = to_timestamp(%s) WHERE id = %s",
        },
        (epoch, job_id),
    )


def set_job_clock(database_url: str, job_id: str, *, created: float, started: float, finished: float) -> None:
    """Pretend the job was created, started and finished at these epochs (to give it known wait
    and run times)."""
    run_sql(
        database_url,
        {
            "sqlite": "UPDATE jobs SET created_at = ?, started_at = ?, completed_at = ? WHERE id = ?",
            "postgresql": (
                "UPDATE jobs SET created_at = to_timestamp(%s), started_at = to_timestamp(%s), "
                "completed_at = to_timestamp(%s) WHERE id = %s"
            ),
        },
        (created, started, finished, job_id),
    )


def move_every_job_back(database_url: str, seconds: float) -> None:
    """Move the creation and last change of every job ``seconds`` into the past."""
    run_sql(
        database_url,
        {
            "sqlite": "UPDATE jobs SET created_at = created_at - ?, updated_at = updated_at - ?",
            "postgresql": (
                "UPDATE jobs SET created_at = created_at - make_interval(secs => %s), "
                "updated_at = updated_at - make_interval(secs => %s)"
            ),
        },
        (seconds, seconds),
    )


def drop_database(database_url: str) -> None:
    """The whole database gone under a running service: SQLite's files deleted, PostgreSQL's
    database dropped (its sessions ended)."""
    if database_backend(database_url) == "sqlite":
        path = database_path(database_url)
        for file in path.parent.glob(path.name + "*"):  # with its -wal and -shm
            file.unlink()
        return
    import psycopg
    from psycopg import sql

    from tests.conftest import POSTGRES_ADMIN_URL

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def drop_table(database_url: str, table: str) -> None:
    """What an operator's mistake looks like: ``table`` gone under a running service."""
    run_sql(
        database_url,
        # PostgreSQL refuses to drop a table others reference (job_events -> jobs) without CASCADE.
        {"sqlite": f"DROP TABLE {table}", "postgresql": f"DROP TABLE {table} CASCADE"},
    )


def refuse_events_with_message(database_url: str, message: str) -> None:
    """A real trigger that makes storing an event with ``message`` fail, after the job row it
    belongs to has changed in the same transaction."""
    if database_backend(database_url) == "sqlite":
        run_sql(
            database_url,
            "CREATE TRIGGER refuse_message BEFORE INSERT ON job_events "
            f"WHEN NEW.message = '{message}' BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END",
        )
        return
    run_sql(
        database_url,
        "CREATE FUNCTION refuse_message() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.message = '{message}' THEN RAISE EXCEPTION 'refused by test trigger'; END IF; "
        "RETURN NEW; END $$",
    )
    run_sql(
        database_url,
        "CREATE TRIGGER refuse_message BEFORE INSERT ON job_events "
        "FOR EACH ROW EXECUTE FUNCTION refuse_message()",
    )


def record_future_migration(database_url: str, version: int) -> None:
    """Record a migration this code does not have, as a newer jobqueue would have (on a
    migrated database)."""
    run_sql(
        database_url,
        {
            "sqlite": "INSERT INTO schema_migrations VALUES (?, ?, ?, 0)",
            "postgresql": "INSERT INTO schema_migrations VALUES (%s, %s, %s, now())",
        },
        (version, f"{version:04d}_from_the_future.sql", "0" * 64),
    )
