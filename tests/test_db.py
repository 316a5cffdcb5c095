"""The write path of ``Database``: group commit, isolation of failing writes, close, checkpoints.

These run against a real SQLite file with a scratch table; the store's own tests cover the
queries. Ops here are the same kind of callables the store hands to ``Database.write``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

import jobqueue.storage.sqlite.connection as connection
from jobqueue.storage.sqlite.connection import Database, WriteConnection
from jobqueue.errors import DatabaseError, JobNotFound


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "db.sqlite")
    await database.open()
    await database.write(create_items)
    try:
        yield database
    finally:
        await database.close()


def create_items(conn: WriteConnection) -> None:
    conn.fetch_all("CREATE TABLE items (n INTEGER PRIMARY KEY, label TEXT NOT NULL)")


def insert(n: int, label: str | None = "x"):  # type: ignore[no-untyped-def]
    def op(conn: WriteConnection) -> int:
        conn.fetch_all("INSERT INTO items (n, label) VALUES (?, ?)", (n, label))
        return n

    return op


def stored(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("SELECT n FROM items ORDER BY n")]


async def test_concurrent_writes_each_get_their_own_result_after_commit(db: Database) -> None:
    results = await asyncio.gather(*(db.write(insert(n)) for n in range(300)))
    assert results == list(range(300))
    assert stored(db.path) == list(range(300))


async def test_a_domain_error_fails_only_its_caller(db: Database) -> None:
    def refuse(conn: WriteConnection) -> None:
        raise JobNotFound("nope")

    results = await asyncio.gather(
        db.write(insert(1)), db.write(refuse), db.write(insert(2)), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], JobNotFound)
    assert stored(db.path) == [1, 2]


async def test_a_broken_write_rolls_its_batch_back_and_the_others_are_retried_alone(db: Database) -> None:
    # label NOT NULL: this insert fails inside SQLite, after its neighbours wrote their rows in
    # the same transaction; they must still commit, exactly once each.
    results = await asyncio.gather(
        *(db.write(insert(n, None if n == 5 else "x")) for n in range(10)), return_exceptions=True
    )
    assert isinstance(results[5], DatabaseError)
    assert "NOT NULL" in str(results[5])
    assert [r for i, r in enumerate(results) if i != 5] == [n for n in range(10) if n != 5]
    assert stored(db.path) == [n for n in range(10) if n != 5]
    assert await db.write(insert(11)) == 11  # the writer goes on


async def test_close_finishes_the_transaction_in_flight_and_fails_the_queued_writes(db: Database) -> None:
    tasks = [asyncio.create_task(db.write(insert(0)))]
    while db._in_flight is None:  # the first write is handed to the writer thread
        await asyncio.sleep(0)
    tasks += [asyncio.create_task(db.write(insert(n))) for n in (1, 2)]
    await asyncio.sleep(0)  # these two queue behind it
    await db.close()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert outcomes[0] == 0
    assert all(isinstance(o, DatabaseError) and "closed" in str(o) for o in outcomes[1:])
    assert stored(db.path) == [0]
    with pytest.raises(DatabaseError, match="not open"):
        await db.write(insert(9))


async def test_the_background_checkpointer_copies_the_wal_while_the_writer_never_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the backstop far away, only the background checkpointer can move pages into the
    # database file; the WAL keeps its size (it restarts from its start) but is fully copied.
    monkeypatch.setattr(connection, "CHECKPOINT_INTERVAL", 0.05)
    database = Database(tmp_path / "db.sqlite")
    await database.open()
    try:
        await database.write(create_items)
        before = database.path.stat().st_size
        await asyncio.gather(*(database.write(insert(n, "y" * 2000)) for n in range(500)))
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
