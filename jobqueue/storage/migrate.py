"""Forward-only schema migrations from numbered ``.sql`` files, one folder per backend.

Files are named ``NNNN_description.sql`` and numbered 1, 2, 3... without gaps, in
``migrations/<backend>/``. Each applied file is recorded in ``schema_migrations`` with its
checksum. The runner refuses (``MigrationError``, one line) a gap or a duplicate number, an
applied file whose text has changed since, and a database that has versions this code does not
know (it is newer than the code). These rules are the same for every backend; a backend only
supplies a ``MigrationTarget``: a transaction that holds the database's migration lock (SQLite's
write lock, a PostgreSQL advisory lock) from before the applied versions are read until the file
and its bookkeeping row commit. Processes starting together on one new database therefore apply
every migration exactly once: the others wait, then find the work done.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import AbstractAsyncContextManager
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Protocol

import msgspec

from jobqueue.errors import MigrationError

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationSession(Protocol):
    """One locked transaction of the runner."""

    async def applied(self) -> list[tuple[int, str, str]]:
        """(version, name, checksum) of every applied migration, in order (creating the
        bookkeeping table when it does not exist yet)."""

    async def apply(self, migration: Migration) -> None:
        """Run the file's statements and record it; raise ``MigrationError`` if one fails."""


class MigrationTarget(Protocol):
    #: The folder of ``migrations/`` this backend reads.
    backend: str

    def locked(self) -> AbstractAsyncContextManager[MigrationSession]:
        """A transaction holding the migration lock: commits on exit, rolls back on error."""


def migrations_dir(backend: str) -> Traversable:
    """The migrations shipped with the code: inside the installed package, else the checkout."""
    packaged = resources.files("jobqueue") / "migrations"
    if packaged.is_dir():
        return packaged / backend
    return Path(__file__).resolve().parent.parent.parent / "migrations" / backend


def load_migrations(backend: str, folder: Traversable | None = None) -> list[Migration]:
    folder = migrations_dir(backend) if folder is None else folder
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


def check_history(applied: list[tuple[int, str, str]], migrations: list[Migration]) -> None:
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
    target: MigrationTarget, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply every pending migration, each in its own locked transaction; return those applied."""
    migrations = load_migrations(target.backend) if migrations is None else migrations
    applied_now: list[Migration] = []
    while True:
        async with target.locked() as session:
            applied = await session.applied()
            check_history(applied, migrations)
            pending = migrations[len(applied) :]
            if not pending:
                return applied_now
            await session.apply(pending[0])
        applied_now.append(pending[0])

