"""Forward-only schema migrations from numbered ``.sql`` files.

Files are named ``NNNN_description.sql`` and numbered 1, 2, 3... without gaps. Each applied file
is recorded in ``schema_migrations`` with its checksum. The runner refuses (``MigrationError``,
one line) a gap or a duplicate number, an applied file whose text has changed since, and a
database that has versions this code does not know (it is newer than the code).

Each file runs inside its own ``BEGIN IMMEDIATE`` transaction together with its bookkeeping row,
statement by statement (``executescript`` would commit first and break atomicity). The write
lock is taken before the applied versions are read, so two processes starting on one new file
apply every migration exactly once: the second waits, then finds the work done.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import aiosqlite
import msgspec

from jobqueue.errors import MigrationError

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""
_SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
_INSERT_APPLIED = (
    "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)"
)


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Traversable:
    """The migrations shipped with the code: inside the installed package, else the checkout."""
    packaged = resources.files("jobqueue") / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "migrations"


def load_migrations(folder: Traversable | None = None) -> list[Migration]:
    folder = migrations_dir() if folder is None else folder
    if not folder.is_dir():
        raise MigrationError(f"migrations folder {str(folder)!r} not found")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(
                f"migration file {entry.name!r} is not named NNNN_lowercase_name.sql"
            )
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"duplicate migration number {version:04d}: {found[version].name!r} and {entry.name!r}"
            )
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    migrations = [found[v] for v in sorted(found)]
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration {expected:04d} is missing (found {migration.name!r} after a gap)"
            )
    return migrations


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (``sqlite3.complete_statement`` knows triggers)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if _has_code(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if _has_code(buffer):
        raise MigrationError(f"incomplete SQL statement at the end of a migration: {buffer.strip()[:80]!r}")
    return statements


def _has_code(sql: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


def _check_history(applied: list[tuple[int, str, str]], migrations: list[Migration]) -> None:
    known = {m.version: m for m in migrations}
    for version, name, checksum in applied:
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"database is at migration {version:04d} ({name}) but this code only knows up to "
                f"{len(migrations):04d}: the database is newer than the code; upgrade jobqueue"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.name!r} was changed after it was applied; "
                "never edit an applied migration, add a new one"
            )


async def apply_migrations(
    conn: aiosqlite.Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply every pending migration on ``conn`` (autocommit mode); return the ones applied."""
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[Migration] = []
    while True:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute(_CREATE_TABLE)
            applied = [tuple(row) for row in await conn.execute_fetchall(_SELECT_APPLIED)]
            _check_history(applied, migrations)  # type: ignore[arg-type]
            pending = migrations[len(applied) :]
            if not pending:
                await conn.execute("COMMIT")
                return applied_now
            migration = pending[0]
            for statement in split_statements(migration.sql):
                try:
                    await conn.execute(statement)
                except sqlite3.Error as exc:
                    raise MigrationError(f"migration {migration.name!r} failed: {exc}") from None
            await conn.execute(
                _INSERT_APPLIED,
                (migration.version, migration.name, migration.checksum, time.time()),
            )
            await conn.execute("COMMIT")
            applied_now.append(migration)
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
