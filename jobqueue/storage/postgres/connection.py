"""PostgreSQL connections: a psycopg pool, group commit, events in commit order, the signal.

Writes queue up and run as transactions on a pool connection, ``WRITERS`` at once; a
transaction carries every write waiting when it starts (group commit): one COMMIT, one WAL
flush and one event insert serve many callers, and each caller is answered only after the
transaction holding its write committed. An idle process runs a write at once. Writes of the
same kind on distinct jobs (completions, progress, heartbeats) merge into one statement.

Each transaction's events are inserted by one statement as its last step before COMMIT, with
ids drawn under a transaction lock (``jobqueue_reserve_event_ids``), so global event ids
increase in commit order on PostgreSQL too: only that insert and the commit are serialized
between transactions of all processes.

Without a pooler, other processes learn of commits through LISTEN/NOTIFY: a payload-free
signal (the payload only names the sender), sent by a notifier task after commits, at most one
per ``NOTIFY_INTERVAL`` per process, never from inside a write transaction. Behind PgBouncer in
transaction mode (``DATABASE_POOLING=transaction``) LISTEN is not available and psycopg must
not prepare statements; readers then poll.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import msgspec
from msgspec import Raw
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from jobqueue.errors import DatabaseError, JobQueueError, MigrationError
from jobqueue.storage.migrate import Migration
from jobqueue.storage.queries import load_queries

T = TypeVar("T")
QUERIES = load_queries(__package__)

logger = logging.getLogger(__name__)

#: Write transactions one process runs at once; more writes queue and join the next one. One,
#: as on SQLite: measured against 2 and 4, it spends the least CPU per job (batches are larger),
#: and a second lane let a heartbeat's transaction hold a row that a claim then skipped.
WRITERS = 1
#: Most writes one transaction carries.
MAX_BATCH = 256
#: Seconds between two commit signals of one process (NOTIFY is coalesced to this).
NOTIFY_INTERVAL = 0.01
#: Seconds to wait for the first connection before giving up on the URL.
CONNECT_TIMEOUT = 10.0
#: The channel of the commit signal.
CHANNEL = "jobqueue_events"

#: Most writes of one kind a transaction merges into one statement.
MAX_MERGE = 256

#: An event as recorded by a write op: its id (filled in at insert) and the job_events values.
EventValues = list[Any]
#: A write operation: awaits statements on the transaction's connection only.
WriteOp = Callable[["Transaction"], Awaitable[T]]
#: What a merged write op answers: its result, or the domain error refusing it.
Outcome = tuple[bool, Any]


class MergedOp:
    """A write that a transaction can run together with writes of the same kind, in one
    statement (say, every completion of the batch in one ``UPDATE ... FROM unnest(...)``).

    Python's time per statement (psycopg's query conversion, one round trip each) was what
    limited a worker pool on PostgreSQL; merging makes a batch of completions cost what one
    does. Consecutive ops of one kind on distinct jobs merge; a second op on the same job
    starts a new statement, so writes of one job still apply in order.
    """

    __slots__ = ("kind", "job_id", "item", "events", "run_many")

    def __init__(
        self,
        kind: str,
        job_id: str,
        item: Any,
        run_many: Callable[[Transaction, list[MergedOp]], Awaitable[list[Outcome]]],
    ) -> None:
        self.kind = kind
        self.job_id = job_id
        self.item = item
        #: The events this op recorded (``run_many`` appends them; cleared before a rerun).
        self.events: list[EventValues] = []
        self.run_many = run_many


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unparsable PostgreSQL URL)"
    user = info.get("user")
    host = info.get("host", "localhost")
    port = info.get("port", "5432")
    name = info.get("dbname", "")
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{name}"


class Transaction:
    """What a write op sees: statements on the batch's connection, and its event recorder."""

    __slots__ = ("conn", "events", "new_jobs")

    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        self.conn = conn
        #: Every event of the transaction, in order; inserted just before COMMIT.
        self.events: list[EventValues] = []
        #: Jobs created without idempotency key, inserted together before the events (one
        #: statement for all of them instead of one each).
        self.new_jobs: list[tuple[Any, ...]] = []

    async def fetch_all(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = await self.conn.execute(sql, params)
        return await cur.fetchall()

    async def fetch_one(self, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        cur = await self.conn.execute(sql, params)
        return await cur.fetchone()

    async def finish(self) -> None:
        """The transaction's last statements: its new jobs, then its events."""
        if self.new_jobs:
            rows = [dict(zip(_NEW_JOB_KEYS, job)) for job in self.new_jobs]
            await self.conn.execute(QUERIES["insert_new_jobs"], {"rows": _encode(rows).decode()})
        if not self.events:
            return
        rows = [
            {
                "job_id": e[1], "seq": e[2], "job_type": e[3], "kind": e[4], "status": e[5],
                "progress": e[6], "message": e[7], "data": None if e[8] is None else Raw(e[8]), "at": e[9],
            }
            for e in self.events
        ]  # fmt: skip
        cur = await self.conn.execute(QUERIES["insert_events"], {"rows": _encode(rows).decode()})
        first = min(row["id"] for row in await cur.fetchall())
        for offset, event in enumerate(self.events):
            event[0] = first + offset


#: The keys of a new job's values (``Transaction.new_jobs``), as insert_new_jobs reads them.
_NEW_JOB_KEYS = ("id", "job_type", "priority", "request_data", "now", "max_attempts", "run_at", "timeout")
_encode = msgspec.json.Encoder().encode


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    # jsonb comes back through msgspec, as SQLite's JSON text does.
    set_json_loads(msgspec.json.decode, conn)


class PgDatabase:
    """The connections of one process to one PostgreSQL database."""

    #: Which folder of migrations/ the runner reads for this database (``MigrationTarget``).
    backend = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, transaction_pooling: bool = False) -> None:
        self.url = url
        self.transaction_pooling = transaction_pooling
        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
        if transaction_pooling:
            # A pooler in transaction mode hands each transaction to any server connection:
            # a statement prepared on one is unknown on the next.
            kwargs["prepare_threshold"] = None
        self._pool = AsyncConnectionPool(
            url,
            min_size=min(2, pool_size),
            max_size=pool_size,
            kwargs=kwargs,
            configure=_configure,
            open=False,
            name="jobqueue",
        )
        self._queue: list[tuple[WriteOp[Any] | MergedOp, asyncio.Future[Any]]] = []
        self._alone: deque[tuple[WriteOp[Any] | MergedOp, asyncio.Future[Any]]] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._open = False
        self._sender = uuid.uuid4().hex
        self._notify_wanted = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        # One plain connection first: a wrong or unreachable URL fails at once with the server's
        # own reason, where the pool would retry in the background and only time out.
        try:
            probe = await psycopg.AsyncConnection.connect(self.url, connect_timeout=int(CONNECT_TIMEOUT))
            await probe.close()
            await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except (PoolTimeout, psycopg.Error) as exc:
            await self._pool.close()
            raise DatabaseError(f"cannot connect to PostgreSQL at {redact(self.url)}: {_reason(exc)}") from None
        self._open = True
        if not self.transaction_pooling:
            self._background.append(asyncio.create_task(self._notify_loop(), name="jobqueue-pg-notify"))

    async def close(self) -> None:
        self._open = False
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        for _, future in [*self._alone, *self._queue]:
            if not future.done():
                future.set_exception(DatabaseError("database closed before the write ran"))
        self._alone.clear()
        self._queue.clear()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self._pool.close()

    # -- reads -------------------------------------------------------------------------------

    async def fetch_all(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall()
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"database read failed: {_reason(exc)}") from None

    async def fetch_one(self, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    # -- writes ------------------------------------------------------------------------------

    async def write(self, op: WriteOp[T] | MergedOp) -> Any:
        """Run ``op(tx)`` inside a write transaction and return its result after COMMIT.

        The same contract as SQLite's ``Database.write``: ``op`` either finishes its writes or
        raises a ``JobQueueError`` before writing anything (that fails only its caller); any
        other exception rolls the batch back and each write of it is retried alone.
        """
        if not self._open:
            raise DatabaseError("database is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        self._start_batches()
        # A caller that goes away does not take its write back: it commits all the same.
        return await future

    def _start_batches(self) -> None:
        while len(self._running) < WRITERS and (self._alone or self._queue):
            if self._alone:
                batch = [self._alone.popleft()]
            else:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
            task = asyncio.create_task(self._run_batch(batch), name="jobqueue-pg-write")
            self._running.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._open:
            self._start_batches()

    async def _run_batch(self, batch: list[tuple[WriteOp[Any] | MergedOp, asyncio.Future[Any]]]) -> None:
        results: list[Outcome] = []
        try:
            async with self._pool.connection() as conn, conn.transaction():
                tx = Transaction(conn)
                ops = [op for op, _ in batch]
                start = 0
                while start < len(ops):
                    op = ops[start]
                    if isinstance(op, MergedOp):
                        group = _merge_group(ops, start)
                        for merged in group:
                            merged.events.clear()  # a batch retried alone runs it again
                        results += await op.run_many(tx, group)
                        start += len(group)
                        continue
                    try:
                        results.append((True, await op(tx)))
                    except JobQueueError as exc:
                        results.append((False, exc))
                    start += 1
                await tx.finish()
        except Exception as exc:
            if len(batch) > 1:
                logger.warning("write batch of %d failed (%s); retrying each alone", len(batch), exc)
                self._alone.extend(batch)
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(_as_database_error(exc))
            return
        if tx.events and not self.transaction_pooling:
            self._notify_wanted.set()
        for (_, future), (ok, value) in zip(batch, results):
            if future.done():  # the caller went away; its write committed all the same
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    # -- the commit signal ---------------------------------------------------------------------

    async def _notify_loop(self) -> None:
        while True:
            await self._notify_wanted.wait()
            self._notify_wanted.clear()
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(QUERIES["notify"], {"sender": self._sender})
            except psycopg.Error as exc:
                # Readers fall back on their poll; nothing is lost, it only arrives later.
                logger.warning("commit signal failed: %s", exc)
            await asyncio.sleep(NOTIFY_INTERVAL)

    async def listen(self, on_signal: Callable[[], None]) -> bool:
        if self.transaction_pooling:
            return False
        self._background.append(
            asyncio.create_task(self._listen_loop(on_signal), name="jobqueue-pg-listen")
        )
        return True

    async def _listen_loop(self, on_signal: Callable[[], None]) -> None:
        backoff = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(QUERIES["listen"])
                    backoff = 0.1
                    # Whatever was committed while we were not listening: the poll covers it.
                    on_signal()
                    async for notify in conn.notifies():
                        if notify.payload != self._sender:
                            on_signal()
            except psycopg.Error as exc:
                logger.warning("LISTEN connection lost (%s); events come from polling meanwhile", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    # -- migrations ----------------------------------------------------------------------------

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[PgMigrationSession]:
        """A transaction holding the migration lock, for the migration runner."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(QUERIES["migration_lock"])
            yield PgMigrationSession(conn)


def _merge_group(ops: list[Any], start: int) -> list[MergedOp]:
    """The merged ops from ``start`` on that one statement can run: same kind, distinct jobs."""
    first: MergedOp = ops[start]
    group = [first]
    jobs = {first.job_id}
    for op in ops[start + 1 : start + MAX_MERGE]:
        if not isinstance(op, MergedOp) or op.kind != first.kind or op.job_id in jobs:
            break
        group.append(op)
        jobs.add(op.job_id)
    return group


class PgMigrationSession:
    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        self._conn = conn

    async def applied(self) -> list[tuple[int, str, str]]:
        await self._conn.execute(QUERIES["create_migrations_table"])
        cur = await self._conn.execute(QUERIES["applied_migrations"])
        return [(row["version"], row["name"], row["checksum"]) for row in await cur.fetchall()]

    async def apply(self, migration: Migration) -> None:
        try:
            # No parameters: the whole file goes as one simple query, dollar quotes included.
            async with self._conn.transaction():  # a savepoint: a failed file leaves nothing
                await self._conn.execute(migration.sql.encode())
        except psycopg.Error as exc:
            raise MigrationError(f"migration {migration.name!r} failed: {_reason(exc)}") from None
        await self._conn.execute(
            QUERIES["record_migration"],
            {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
        )


def _reason(exc: Exception) -> str:
    """The first line of a driver error (the server's message), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _as_database_error(exc: Exception) -> Exception:
    if isinstance(exc, psycopg.Error):
        return DatabaseError(f"database write failed: {_reason(exc)}")
    return exc
