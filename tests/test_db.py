"""The write path of each backend's ``Database``: group commit, isolation of failing writes,
close; and SQLite's checkpoints.

These run against a real database with a scratch table; the store's own tests cover the
queries. Ops here are the same kind of callables the store hands to ``Database.write``: plain
functions on SQLite's writer connection, coroutines on a PostgreSQL transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import jobqueue.storage.sqlite.connection as connection
from jobqueue.errors import DatabaseError, JobNotFound
from jobqueue.settings import database_backend, database_path
from jobqueue.storage.postgres.connection import PgDatabase, Transaction
from jobqueue.storage.sqlite.connection import Database, WriteConnection
from tests.conftest import sqlite_only
from tests.helpers import run_sql

CREATE_ITEMS = "CREATE TABLE items (n INTEGER PRIMARY KEY, label TEXT NOT NULL)"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database | PgDatabase]:
    sqlite = database_backend(database_url) == "sqlite"
    database = Database(database_path(database_url)) if sqlite else PgDatabase(database_url)
    await database.open()
    run_sql(database_url, CREATE_ITEMS)
    try:
        yield database
    finally:
        await database.close()


def insert(db: Database | PgDatabase, n: int, label: str | None = "x") -> Callable[[Any], Any]:
    """A write op of ``db``'s kind that inserts one item and returns its number."""
    if isinstance(db, Database):

        def op(conn: WriteConnection) -> int:
            conn.fetch_all("INSERT INTO items (n, label) VALUES (?, ?)", (n, label))
            return n

        return op

    async def pg_op(tx: Transaction) -> int:
        sql = "INSERT INTO items (n, label) VALUES (%(n)s, %(label)s) RETURNING n"
        return int((await tx.fetch_all(sql, {"n": n, "label": label}))[0]["n"])

    return pg_op


def refuse(db: Database | PgDatabase) -> Callable[[Any], Any]:
    """A write op of ``db``'s kind that refuses with a domain error before writing anything."""
    if isinstance(db, Database):

        def op(conn: WriteConnection) -> None:
            raise JobNotFound("nope")

        return op

    async def pg_op(tx: Transaction) -> None:
        raise JobNotFound("nope")

    return pg_op


def stored(database_url: str) -> list[int]:
    return [row["n"] for row in run_sql(database_url, "SELECT n FROM items ORDER BY n")]


async def test_concurrent_writes_each_get_their_own_result_after_commit(
    db: Database | PgDatabase, database_url: str
) -> None:
    results = await asyncio.gather(*(db.write(insert(db, n)) for n in range(300)))
    assert results == list(range(300))
    assert stored(database_url) == list(range(300))


async def test_a_domain_error_fails_only_its_caller(db: Database | PgDatabase, database_url: str) -> None:
    results = await asyncio.gather(
        db.write(insert(db, 1)), db.write(refuse(db)), db.write(insert(db, 2)), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], JobNotFound)
    assert stored(database_url) == [1, 2]


async def test_a_broken_write_rolls_its_batch_back_and_the_others_are_retried_alone(
    db: Database | PgDatabase, database_url: str
) -> None:
    # label NOT NULL: this insert fails inside the database, after its neighbours wrote their
    # rows in the same transaction; they must still commit, exactly once each.
    results = await asyncio.gather(
        *(db.write(insert(db, n, None if n == 5 else "x")) for n in range(10)), return_exceptions=True
    )
    assert isinstance(results[5], DatabaseError)
    assert "label" in str(results[5])  # the database's own reason, naming the column
    assert [r for i, r in enumerate(results) if i != 5] == [n for n in range(10) if n != 5]
    assert stored(database_url) == [n for n in range(10) if n != 5]
    assert await db.write(insert(db, 11)) == 11  # the writer goes on


@sqlite_only  # which write is in flight is SQLite's writer thread's own state
async def test_close_finishes_the_transaction_in_flight_and_fails_the_queued_writes(
    db: Database, database_url: str
) -> None:
    tasks = [asyncio.create_task(db.write(insert(db, 0)))]
    while db._in_flight is None:  # the first write is handed to the writer thread
        await asyncio.sleep(0)
    tasks += [asyncio.create_task(db.write(insert(db, n))) for n in (1, 2)]
    await asyncio.sleep(0)  # these two queue behind it
    await db.close()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert outcomes[0] == 0
    assert all(isinstance(o, DatabaseError) and "closed" in str(o) for o in outcomes[1:])
    assert stored(database_url) == [0]
    with pytest.raises(DatabaseError, match="not open"):
        await db.write(insert(db, 9))


async def test_the_background_checkpointer_copies_the_wal_while_the_writer_never_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the backstop far away, only the background checkpointer can move pages into the
    # database file; the WAL keeps its size (it restarts from its start) but is fully copied.
    monkeypatch.setattr(connection, "CHECKPOINT_INTERVAL", 0.05)
    database = Database(tmp_path / "db.sqlite")
    await database.open()
    try:
        await database.write(lambda conn: conn.fetch_all(CREATE_ITEMS))
        before = database.path.stat().st_size
        await asyncio.gather(*(database.write(insert(database, n, "y" * 2000)) for n in range(500)))
        for _ in range(100):
            if database.path.stat().st_size > before + 500 * 2000:
                break
            await asyncio.sleep(0.05)
        assert database.path.stat().st_size > before + 500 * 2000
        # Nothing is left to copy. busy=1 means the background checkpointer was running at the
        # same moment (the numbers are then not an answer): ask again.
        with closing(sqlite3.connect(database.path)) as conn:
            for _ in range(100):
                busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if not busy:
                    break
                await asyncio.sleep(0.02)
        assert busy == 0 and log == copied, (busy, log, copied)
    finally:
        await database.close()
