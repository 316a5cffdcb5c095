"""PostgreSQL connections: an asyncpg pool, group commit, events in commit order, the signal.

asyncpg, not psycopg 3: an A/B of this workload's statements (claim, completion, event insert
in one transaction, same server, alternating rounds) spent 620-790 us of CPU per job through
asyncpg against 1,000-1,330 us through psycopg 3 with psycopg_pool, and the process's CPU is
what limits a pool of workers (see benchmarks/README.md). Queries keep psycopg's named
``%(name)s`` placeholders in ``queries.sql`` (readable, one name per value); they are turned
into asyncpg's positional ``$n`` once, when first used.

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
transaction mode (``DATABASE_POOLING=transaction``) LISTEN is not available and named
prepared statements must not be cached; readers then poll.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import msgspec
from msgspec import Raw

from jobqueue.errors import DatabaseError, JobQueueError, MigrationError
from jobqueue.settings import redact_url
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
#: Seconds a close waits for the pool's connections to be released before terminating them.
POOL_CLOSE_TIMEOUT = 10.0
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

    Python's time per statement (the driver's work and one round trip each) was what limited a
    worker pool on PostgreSQL; merging makes a batch of completions cost what one
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


_NAMED = re.compile(r"%\((\w+)\)s")
#: SQL text with named placeholders -> (SQL with $n, the parameter names in $n order).
_POSITIONAL: dict[str, tuple[str, tuple[str, ...]]] = {}


def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``%(name)s`` placeholders as asyncpg's ``$1, $2...`` (one number per distinct name)."""
    found = _POSITIONAL.get(sql)
    if found is None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        found = _POSITIONAL[sql] = (_NAMED.sub(number, sql), tuple(names))
    return found


def _args(sql: str, params: dict[str, Any] | None) -> tuple[str, list[Any]]:
    text, names = positional(sql)
    return text, [params[name] for name in names] if params else []


Row = asyncpg.Record


class Transaction:
    """What a write op sees: statements on the batch's connection, and its event recorder."""

    __slots__ = ("conn", "events", "new_jobs", "before_finish")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        #: Every event of the transaction, in order; inserted just before COMMIT.
        self.events: list[EventValues] = []
        #: Jobs created without idempotency key, inserted together before the events (one
        #: statement for all of them instead of one each).
        self.new_jobs: list[tuple[Any, ...]] = []
        #: Work an op leaves for the end of the transaction (settling the dependents of a job
        #: it finished): run by ``finish`` before the new jobs and events are inserted, so
        #: ops that record events synchronously, merged ones included, can ask for statements.
        self.before_finish: list[Callable[[Transaction], Awaitable[None]]] = []

    async def fetch_all(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        text, args = _args(sql, params)
        return await self.conn.fetch(text, *args)  # type: ignore[no-any-return]

    async def fetch_one(self, sql: str, params: dict[str, Any] | None = None) -> Row | None:
        text, args = _args(sql, params)
        return await self.conn.fetchrow(text, *args)

    def iterate(self, sql: str, params: dict[str, Any] | None = None, prefetch: int = 100) -> Any:
        """The rows of a query through a cursor, fetched ``prefetch`` at a time as they are
        iterated (``async for``): a reader that stops early reads no more."""
        text, args = _args(sql, params)
        return self.conn.cursor(text, *args, prefetch=prefetch)

    async def finish(self) -> None:
        """The transaction's last statements: deferred work, its new jobs, then its events."""
        for callback in self.before_finish:  # a callback may append more (a cascade)
            await callback(self)
        if self.new_jobs:
            rows = [dict(zip(_NEW_JOB_KEYS, job)) for job in self.new_jobs]
            await self.fetch_all(QUERIES["insert_new_jobs"], {"rows": _encode(rows).decode()})
        if not self.events:
            return
        rows = [
            {
                "job_id": e[1], "seq": e[2], "job_type": e[3], "kind": e[4], "status": e[5],
                "progress": e[6], "message": e[7], "data": None if e[8] is None else Raw(e[8]), "at": e[9],
            }
            for e in self.events
        ]  # fmt: skip
        inserted = await self.fetch_all(QUERIES["insert_events"], {"rows": _encode(rows).decode()})
        first = min(row["id"] for row in inserted)
        for offset, event in enumerate(self.events):
            event[0] = first + offset


#: The keys of a new job's values (``Transaction.new_jobs``), as insert_new_jobs reads them.
_NEW_JOB_KEYS = (
    "id", "job_type", "priority", "request_data", "now", "max_attempts", "run_at", "timeout", "concurrency_key",
    "trace_context",
)
_encode = msgspec.json.Encoder().encode


async def _configure(conn: asyncpg.Connection) -> None:
    # json and jsonb come back through msgspec, as SQLite's JSON text does; values go out as
    # JSON text the store encoded already.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=_identity, decoder=msgspec.json.decode, format="text"
        )


def _identity(text: str) -> str:
    return text


class PgDatabase:
    """The connections of one process to one PostgreSQL database."""

    #: Which folder of migrations/ the runner reads for this database (``MigrationTarget``).
    backend = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, transaction_pooling: bool = False) -> None:
        self.url = url
        self.transaction_pooling = transaction_pooling
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._queue: list[tuple[WriteOp[Any] | MergedOp, asyncio.Future[Any]]] = []
        self._alone: deque[tuple[WriteOp[Any] | MergedOp, asyncio.Future[Any]]] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._open = False
        self._sender = uuid.uuid4().hex
        self._notify_wanted = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "PgDatabase.open() was not awaited"
        return self._pool

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=min(2, self._pool_size),
                max_size=self._pool_size,
                init=_configure,
                timeout=CONNECT_TIMEOUT,
                # A pooler in transaction mode hands each transaction to any server connection:
                # a statement prepared on one is unknown on the next.
                statement_cache_size=0 if self.transaction_pooling else 1024,
            )
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL at {redact_url(self.url)}: {_reason(exc)}") from None
        self._open = True
        if not self.transaction_pooling:
            self._background.append(asyncio.create_task(self._notify_loop(), name="jobqueue-pg-notify"))

    async def close(self) -> None:
        self._open = False
        while self._running:
            running = list(self._running)
            await asyncio.gather(*running, return_exceptions=True)
            # Not left to _batch_done: from Python 3.12, awaiting a gather of tasks that are all
            # done returns without yielding to the loop, so their done callbacks (scheduled, not
            # yet run) never got to discard them and this loop spun for ever.
            self._running.difference_update(running)
        for _, future in [*self._alone, *self._queue]:
            if not future.done():
                future.set_exception(DatabaseError("database closed before the write ran"))
        self._alone.clear()
        self._queue.clear()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self._pool is not None:
            # close() waits for every acquired connection to come back; one that never does (a
            # read cancelled at the wrong instant can lose its connection inside asyncpg's pool
            # on Python 3.12) must not hang the shutdown: after a grace, terminate them all.
            try:
                await asyncio.wait_for(self._pool.close(), POOL_CLOSE_TIMEOUT)
            except TimeoutError:
                logger.warning(
                    "database pool: connections still in use %.0fs after close; terminating them", POOL_CLOSE_TIMEOUT
                )
                self._pool.terminate()
            self._pool = None

    # -- reads -------------------------------------------------------------------------------

    async def fetch_all(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        text, args = _args(sql, params)
        try:
            return await self.pool.fetch(text, *args)  # type: ignore[no-any-return]
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
            raise DatabaseError(f"database read failed: {_reason(exc)}") from None

    async def fetch_one(self, sql: str, params: dict[str, Any] | None = None) -> Row | None:
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
            async with self.pool.acquire() as conn, conn.transaction():
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
                await self.fetch_all(QUERIES["notify"], {"sender": self._sender})
            except (DatabaseError, asyncpg.PostgresError) as exc:
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
        def signalled(conn: Any, pid: int, channel: str, payload: str) -> None:
            if payload != self._sender:
                on_signal()

        backoff = 0.1
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
                try:
                    conn.add_termination_listener(lambda _: lost.set())
                    await conn.add_listener(CHANNEL, signalled)
                    backoff = 0.1
                    # Whatever was committed while we were not listening: the poll covers it.
                    on_signal()
                    await lost.wait()
                finally:
                    await conn.close(timeout=2)
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("LISTEN connection lost (%s); events come from polling meanwhile", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    # -- migrations ----------------------------------------------------------------------------

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[PgMigrationSession]:
        """A transaction holding the migration lock, for the migration runner."""
        async with self.pool.acquire() as conn, conn.transaction():
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
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def applied(self) -> list[tuple[int, str, str]]:
        await self._conn.execute(QUERIES["create_migrations_table"])
        rows = await self._conn.fetch(QUERIES["applied_migrations"])
        return [(row["version"], row["name"], row["checksum"]) for row in rows]

    async def apply(self, migration: Migration) -> None:
        try:
            # No arguments: the whole file goes as one simple query, dollar quotes included;
            # the savepoint makes a failed file leave nothing.
            async with self._conn.transaction():
                await self._conn.execute(migration.sql)
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"migration {migration.name!r} failed: {_reason(exc)}") from None
        text, args = _args(
            QUERIES["record_migration"],
            {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
        )
        await self._conn.execute(text, *args)


def _reason(exc: Exception) -> str:
    """The first line of a driver error (the server's message), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _as_database_error(exc: Exception) -> Exception:
    if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        return DatabaseError(f"database write failed: {_reason(exc)}")
    return exc
