"""SQLite connections: pragmas, one writer with group commit, a small pool of readers.

SQLite allows one writer at a time per file. Every write of this process goes through one
connection: while its thread runs a transaction, new writes queue, and the next transaction
takes all of them in a single ``BEGIN IMMEDIATE`` (group commit): under load one commit serves
many callers, and each caller is answered only after the transaction holding its write has
committed. ``IMMEDIATE`` takes
the write lock up front, so another process holding it makes us wait (``busy_timeout``) instead of
failing with SQLITE_BUSY half-way through a read-then-write transaction.

The writer is a plain ``sqlite3`` connection owned by one thread of its own (a single-thread
executor): a whole transaction of synchronous write ops runs there in one hop, through
``loop.run_in_executor``, a public API (awaiting each statement from the event loop would cost
two thread switches per statement, each waiting for a turn of a busy loop).

Readers use their own connections: in WAL mode they never block the writer and always see the
latest committed transaction when they start. A last connection checkpoints the WAL in the
background, so the writer does not stall on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from jobqueue.errors import DatabaseError, JobQueueError, MigrationError
from jobqueue.storage.migrate import Migration
from jobqueue.storage.queries import load_queries

T = TypeVar("T")
QUERIES = load_queries(__package__)
#: A write operation: runs synchronously in the writer thread, inside the batch's transaction.
WriteOp = Callable[["WriteConnection"], T]

logger = logging.getLogger(__name__)

#: RETURNING (used by the claim and by every fenced update) arrived in SQLite 3.35.
MIN_SQLITE_VERSION = (3, 35, 0)
#: Milliseconds a connection waits for another process's lock before giving up.
BUSY_TIMEOUT_MS = 10_000
#: Most writes one transaction carries; bounds the latency a big burst adds to its last caller.
MAX_BATCH = 512
#: Seconds between checkpoints of the background checkpointer (when this process wrote).
CHECKPOINT_INTERVAL = 0.5
#: Free bytes on the database's file system below which it counts as full: a transaction
#: that grows the WAL needs room, and a full disk fails every such commit.
MIN_FREE_BYTES = 1024 * 1024
#: WAL pages (4 KiB) after which the writer checkpoints itself at a commit. Only a backstop:
#: the background checkpointer has normally copied the WAL back already (see Database).
WRITER_AUTOCHECKPOINT_PAGES = 10_000


def check_sqlite_version() -> None:
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        need = ".".join(map(str, MIN_SQLITE_VERSION))
        raise DatabaseError(
            f"SQLite {sqlite3.sqlite_version} is too old: jobqueue needs {need} or newer "
            "(for UPDATE ... RETURNING); install a newer Python or libsqlite3"
        )


def _pragmas(synchronous: str) -> list[str]:
    return [
        f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
        # A new file gets incremental auto-vacuum so pruning can hand pages back to the OS; it
        # only takes effect before the first table exists, and is a no-op on existing files.
        "PRAGMA auto_vacuum = INCREMENTAL",
        "PRAGMA journal_mode = WAL",
        # NORMAL in WAL mode: a commit survives a crash of any process; only a power loss or OS
        # crash can lose the last transactions (never corrupt the file). FULL fsyncs every commit.
        f"PRAGMA synchronous = {synchronous}",
        "PRAGMA foreign_keys = ON",
        # A WAL grown past this is truncated back to it once a checkpoint lets it restart.
        "PRAGMA journal_size_limit = 67108864",
    ]


def _check_wal(path: Path, rows: Iterable[Any]) -> None:
    mode = next(iter(rows))[0]
    if mode != "wal":
        raise DatabaseError(f"cannot switch {str(path)!r} to WAL mode (got {mode!r})")


async def connect(path: Path, synchronous: str) -> aiosqlite.Connection:
    """Open one aiosqlite connection (readers, migrations) with the pragmas every connection uses."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, Python's sqlite3 never does.
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {str(path)!r}: {exc}") from None
    conn.row_factory = sqlite3.Row
    try:
        for pragma in _pragmas(synchronous):
            rows = await conn.execute_fetchall(pragma)
            if "journal_mode" in pragma:
                _check_wal(path, rows)
    except sqlite3.Error as exc:
        await conn.close()
        raise DatabaseError(f"cannot use database {str(path)!r}: {exc}") from None
    except BaseException:
        await conn.close()
        raise
    return conn


def connect_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open the writer connection; called in the writer thread, which alone uses it."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {str(path)!r}: {exc}") from None
    conn.row_factory = sqlite3.Row
    try:
        for pragma in _pragmas(synchronous):
            rows = conn.execute(pragma).fetchall()
            if "journal_mode" in pragma:
                _check_wal(path, rows)
        conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")
    except sqlite3.Error as exc:
        conn.close()
        raise DatabaseError(f"cannot use database {str(path)!r}: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn


class Database:
    """The connections of one process to one SQLite file."""

    #: Which folder of migrations/ the runner reads for this database (``MigrationTarget``).
    backend = "sqlite"

    def __init__(self, path: Path, *, synchronous: str = "NORMAL", readers: int = 2) -> None:
        self.path = path
        self.synchronous = synchronous
        self._reader_count = readers
        self._writer: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        #: Writes waiting for the next transaction, and those of a failed batch to retry alone.
        self._queue: list[tuple[WriteOp[Any], asyncio.Future[Any]]] = []
        self._alone: deque[tuple[WriteOp[Any], asyncio.Future[Any]]] = deque()
        #: The transaction running in the writer thread, if any.
        self._in_flight: asyncio.Future[Any] | None = None
        self._submit_scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = False
        self._writes_since_checkpoint = 0
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._identity: tuple[int, int] | None = None

    async def open(self) -> None:
        check_sqlite_version()
        if self.path.parent and not self.path.parent.exists():
            raise DatabaseError(f"folder {str(self.path.parent)!r} of the database does not exist")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobqueue-sqlite-writer")
        try:
            self._writer = await self._in_writer_thread(connect_writer, self.path, self.synchronous)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        stat = self.path.stat()
        self._identity = (stat.st_dev, stat.st_ino)
        for _ in range(self._reader_count):
            reader = await connect(self.path, self.synchronous)
            self._all_readers.append(reader)
            self._readers.put_nowait(reader)
        self._checkpointer = await connect(self.path, self.synchronous)
        self._checkpoint_task = asyncio.create_task(self._checkpoint_loop(), name="jobqueue-db-checkpoint")
        self._open = True

    def _in_writer_thread(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        assert self._executor is not None, "Database.open() was not awaited"
        return asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[SQLiteMigrationSession]:
        """A ``BEGIN IMMEDIATE`` transaction on the writer for the migration runner (before the
        write queue is used): the write lock is held from reading the applied versions on."""
        assert self._writer is not None, "Database.open() was not awaited"
        session = SQLiteMigrationSession(self._writer, self._in_writer_thread)
        await self._in_writer_thread(self._writer.execute, "BEGIN IMMEDIATE")
        try:
            yield session
        except BaseException:
            await self._in_writer_thread(_rollback, self._writer)
            raise
        await self._in_writer_thread(self._writer.execute, "COMMIT")

    async def close(self) -> None:
        self._open = False
        # The transaction in flight finishes (its callers are answered); queued writes fail.
        await self._idle.wait()
        for _, future in [*self._alone, *self._queue]:
            if not future.done():
                future.set_exception(DatabaseError("database closed before the write ran"))
        self._alone.clear()
        self._queue.clear()
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
            await asyncio.gather(self._checkpoint_task, return_exceptions=True)
            self._checkpoint_task = None
        if self._checkpointer is not None:
            await self._checkpointer.close()
            self._checkpointer = None
        for reader in self._all_readers:
            await reader.close()
        self._all_readers.clear()
        if self._writer is not None:
            await self._in_writer_thread(self._writer.close)
            self._writer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def check_file(self) -> None:
        """Raise ``DatabaseError`` when the file opened is no longer the one at its path.

        Open connections keep reading and writing a deleted or replaced file without any error,
        and everything committed from then on is lost at the next start; only the path tells.
        """
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise DatabaseError(f"database file {str(self.path)!r} is gone ({exc.strerror})") from None
        if (stat.st_dev, stat.st_ino) != self._identity:
            raise DatabaseError(f"database file {str(self.path)!r} was replaced by another file")

    async def check_writable(self) -> None:
        """Raise ``DatabaseError`` unless a write could commit now.

        An empty write transaction takes the write lock and checks the file before its COMMIT,
        but writes nothing: a file that cannot be written (read-only or immutable database or
        WAL) and a full disk only fail the commits that write pages, so they are asked of the
        file system.
        """
        await self.write(_nothing)
        for file in (self.path, self.path.with_name(self.path.name + "-wal")):
            if file.exists() and not os.access(file, os.W_OK):
                raise DatabaseError(f"database file {str(file)!r} cannot be written")
        disk = os.statvfs(self.path.parent)
        free = disk.f_bavail * disk.f_frsize
        if free < MIN_FREE_BYTES:
            raise DatabaseError(f"disk of the database {str(self.path)!r} is full ({free} bytes free)")

    async def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database file from a connection of its own.

        SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
        writer: copying ~1,000 pages and two fsyncs stalled every write of the process for
        milliseconds each time (iowait ~7-10% and 24% fewer enqueues/s under HTTP load, see
        benchmarks/README.md). A PASSIVE checkpoint here runs beside the writer, which keeps
        committing meanwhile. Under a steady stream of writes the WAL can only restart from
        its beginning at a moment it is fully copied; the writer's own auto-checkpoint at
        ``WRITER_AUTOCHECKPOINT_PAGES`` is the backstop that guarantees such a moment.
        """
        assert self._checkpointer is not None
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            if not self._writes_since_checkpoint:
                continue
            self._writes_since_checkpoint = 0
            try:
                await self._checkpointer.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                # Busy (another process is checkpointing) or a transient error: the next round
                # or the writer's backstop catches up; nothing is lost, the WAL only grows.
                logger.warning("background checkpoint failed: %s", exc)

    # -- reads -------------------------------------------------------------------------------

    async def fetch_all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Iterable[sqlite3.Row]:
        reader = await self._readers.get()
        try:
            return await reader.execute_fetchall(sql, params)
        finally:
            self._readers.put_nowait(reader)

    async def fetch_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        rows = await self.fetch_all(sql, params)
        for row in rows:
            return row
        return None

    # -- writes ------------------------------------------------------------------------------

    async def write(self, op: WriteOp[T]) -> T:
        """Run ``op(conn)`` inside a write transaction and return its result after COMMIT.

        ``op`` must either finish its writes or raise a ``JobQueueError`` before writing anything:
        such a domain error fails only this caller, while the other writes of the batch commit.
        Any other exception rolls the batch back and each write is retried alone, so one broken
        write cannot fail its neighbours. ``op`` is a plain function run in the writer thread.
        """
        if not self._open:
            raise DatabaseError("database is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        self._writes_since_checkpoint += 1
        if self._in_flight is None and not self._submit_scheduled:
            # After the callbacks already due in this loop iteration, which often write too:
            # a burst of requests or of finishing jobs goes out as one transaction, and an idle
            # process pays one iteration, not a task switch.
            self._submit_scheduled = True
            asyncio.get_running_loop().call_soon(self._submit)
        # A caller that goes away does not take its write back: it commits all the same.
        return await future

    def _submit(self) -> None:
        """Hand the waiting writes to the writer thread as one transaction.

        Scheduled by the first write reaching an idle thread, and called by the callback of
        the transaction before otherwise: a write never waits for a task of ours.
        """
        self._submit_scheduled = False
        if self._in_flight is not None or not (self._alone or self._queue):
            return  # closed meanwhile, or already taken by the transaction before
        if self._alone:
            batch = [self._alone.popleft()]
        else:
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
        # The whole transaction runs in the writer thread in one hop.
        done = self._in_writer_thread(_run_transaction, self._writer, [op for op, _ in batch], self.check_file)
        self._in_flight = done
        self._idle.clear()
        done.add_done_callback(partial(self._finished, batch))

    def _finished(
        self, batch: list[tuple[WriteOp[Any], asyncio.Future[Any]]], done: asyncio.Future[Any]
    ) -> None:
        self._in_flight = None
        exc = done.exception()
        if exc is None:
            for (_, future), (ok, value) in zip(batch, done.result()):
                if future.done():  # the caller went away; its write committed all the same
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        elif len(batch) > 1 and isinstance(exc, Exception) and not isinstance(exc, DatabaseError):
            # (A DatabaseError here is the file check before COMMIT: it would fail each alone too.)
            logger.warning("write batch of %d failed (%s); retrying each alone", len(batch), exc)
            self._alone.extend(batch)
        else:
            for _, future in batch:
                if not future.done():
                    future.set_exception(_as_database_error(exc))
        if self._open and (self._alone or self._queue):
            self._submit()
        else:
            self._idle.set()


class WriteConnection:
    """What a write op sees in the writer thread.

    ``scratch`` lives as long as the transaction, and ``before_commit`` callbacks run right
    before COMMIT: together they let ops of one batch share work (the store collects the
    events of every op and inserts them with one ``executemany``).
    """

    __slots__ = ("_conn", "scratch", "_before_commit")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.scratch: dict[str, Any] = {}
        self._before_commit: list[Callable[[sqlite3.Connection], None]] = []

    def fetch_all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    def fetch_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def iterate(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        """The rows of a query, read as they are iterated (close the cursor when done early)."""
        return self._conn.execute(sql, params)

    def before_commit(self, callback: Callable[[sqlite3.Connection], None]) -> None:
        self._before_commit.append(callback)


def _run_transaction(
    raw: sqlite3.Connection, ops: list[WriteOp[Any]], check_file: Callable[[], None]
) -> list[tuple[bool, Any]]:
    """One transaction in the writer thread: each op's result, or its domain error.

    ``check_file`` runs right before COMMIT: a write into a file deleted or replaced under us
    would commit without error and vanish at the next start, so the batch fails instead.
    """
    conn = WriteConnection(raw)
    results: list[tuple[bool, Any]] = []
    raw.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            try:
                results.append((True, op(conn)))
            except JobQueueError as exc:
                results.append((False, exc))
        for callback in conn._before_commit:
            callback(raw)
        check_file()
        raw.execute("COMMIT")
    except BaseException:
        _rollback(raw)
        raise
    return results


def _nothing(conn: WriteConnection) -> None:
    """The write op of ``check_writable``."""


def _rollback(raw: sqlite3.Connection) -> None:
    if raw.in_transaction:
        raw.execute("ROLLBACK")


class SQLiteMigrationSession:
    """The migration runner's view of one locked transaction on the writer connection."""

    def __init__(self, conn: sqlite3.Connection, run: Callable[..., asyncio.Future[Any]]) -> None:
        self._conn = conn
        self._run = run

    async def applied(self) -> list[tuple[int, str, str]]:
        return await self._run(_applied, self._conn)  # type: ignore[no-any-return]

    async def apply(self, migration: Migration) -> None:
        await self._run(_apply, self._conn, migration)


def _applied(conn: sqlite3.Connection) -> list[tuple[int, str, str]]:
    conn.execute(QUERIES["create_migrations_table"])
    rows = conn.execute(QUERIES["applied_migrations"])
    return [(row[0], row[1], row[2]) for row in rows]


def _apply(conn: sqlite3.Connection, migration: Migration) -> None:
    # Statement by statement: executescript would COMMIT first and break the file's atomicity.
    for statement in split_statements(migration.sql):
        try:
            conn.execute(statement)
        except sqlite3.Error as exc:
            raise MigrationError(f"migration {migration.name!r} failed: {exc}") from None
    conn.execute(
        QUERIES["record_migration"], (migration.version, migration.name, migration.checksum, time.time())
    )


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


def _as_database_error(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        return DatabaseError(f"database write failed: {exc}")
    return exc
