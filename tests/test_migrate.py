"""The migration runner on every backend: bookkeeping, refusals, atomicity, concurrent start-up;
the SQLite statement splitter; packaging."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from jobqueue.errors import MigrationError
from jobqueue.settings import database_backend, database_path
from jobqueue.storage.migrate import apply_migrations, load_migrations
from jobqueue.storage.postgres.connection import PgDatabase, Transaction
from jobqueue.storage.sqlite.connection import Database, WriteConnection, split_statements

from .conftest import ROOT, postgres_database, subprocess_env
from .helpers import applied_versions, record_future_migration, run_sql

#: A migration target of either backend (both are ``MigrationTarget``s).
Target = Database | PgDatabase


@pytest.fixture
async def target(database_url: str) -> AsyncIterator[Target]:
    sqlite = database_backend(database_url) == "sqlite"
    database = Database(database_path(database_url)) if sqlite else PgDatabase(database_url)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


async def no_transaction_left(target: Target) -> None:
    """A transaction left open by the runner would make the next write's BEGIN fail."""
    if isinstance(target, Database):

        def op(conn: WriteConnection) -> None:
            conn.fetch_all("SELECT 1")

        await target.write(op)
        return

    async def pg_op(tx: Transaction) -> None:
        await tx.fetch_all("SELECT 1")

    await target.write(pg_op)
    idle_in_transaction = await target.fetch_all(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
        "AND state IN ('idle in transaction', 'idle in transaction (aborted)')"
    )
    assert idle_in_transaction[0]["n"] == 0


def write_migrations(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql, encoding="utf-8")
    return folder


async def rows(target: Target, sql: str) -> list[tuple[object, ...]]:
    return [tuple(dict(row).values()) for row in await target.fetch_all(sql)]


async def recorded(target: Target) -> list[tuple[int, str, str, float]]:
    """The bookkeeping rows, ``applied_at`` in epoch seconds on every backend."""
    found = await rows(target, "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
    return [
        (v, n, c, a.timestamp() if isinstance(a, datetime) else a)  # type: ignore[misc]
        for v, n, c, a in found
    ]


async def tables(target: Target) -> set[str]:
    if isinstance(target, Database):
        # Without SQLite's own tables (sqlite_sequence): they are no part of the schema.
        found = await rows(
            target, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!'"
        )
    else:
        found = await rows(target, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {str(name) for (name,) in found}


async def columns(target: Target, table: str) -> set[str]:
    if isinstance(target, Database):
        return {str(row["name"]) for row in await target.fetch_all(f"PRAGMA table_info({table})")}
    found = await target.fetch_all(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %(table)s",
        {"table": table},
    )
    return {str(row["column_name"]) for row in found}


def assert_one_line(exc: pytest.ExceptionInfo[MigrationError], *needles: str) -> None:
    text = str(exc.value)
    assert text and "\n" not in text
    for needle in needles:
        assert needle in text, text


#: Test migrations, valid SQL on every backend.
SIMPLE = {
    "0001_first.sql": "CREATE TABLE a (x INTEGER);\n",
    "0002_second.sql": "-- a comment\nCREATE TABLE b (y TEXT);\nINSERT INTO b VALUES ('seed');\n",
}


# -- the shipped migrations -------------------------------------------------------------------


async def test_fresh_database_records_every_shipped_migration(target: Target, backend: str) -> None:
    shipped = load_migrations(backend)
    assert [m.version for m in shipped] == list(range(1, len(shipped) + 1))
    assert shipped[0].name == "0001_create_jobs.sql"

    before = time.time()
    applied = await apply_migrations(target)
    after = time.time()

    assert applied == shipped
    found = await recorded(target)
    assert [(v, n, c) for v, n, c, _ in found] == [(m.version, m.name, m.checksum) for m in shipped]
    for _, _, checksum, applied_at in found:
        assert len(checksum) == 64
        assert before - 1 <= applied_at <= after + 1
    assert shipped[0].checksum == hashlib.sha256(shipped[0].sql.encode()).hexdigest()
    assert {"jobs", "job_events", "schema_migrations"} <= await tables(target)


async def test_rerun_is_a_no_op(target: Target) -> None:
    await apply_migrations(target)
    first = await recorded(target)
    assert await apply_migrations(target) == []
    assert await recorded(target) == first


async def test_every_backend_has_the_same_tables_and_columns(tmp_path: Path, postgres_admin_url: str) -> None:
    """The backends keep their own migration files (SQLite's history, PostgreSQL's one file in
    its own types); migrated, they must hold the same tables with the same columns."""
    schemas = []
    with postgres_database(postgres_admin_url) as pg_url:
        for database in (Database(tmp_path / "jobs.db"), PgDatabase(pg_url)):
            await database.open()
            try:
                await apply_migrations(database)
                schemas.append({table: await columns(database, table) for table in await tables(database)})
            finally:
                await database.close()
    sqlite_schema, pg_schema = schemas
    assert "jobs" in sqlite_schema and "job_events" in sqlite_schema
    assert sqlite_schema == pg_schema


# -- bookkeeping on custom folders ------------------------------------------------------------


async def test_only_new_migrations_are_applied(target: Target, backend: str, tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {"0001_first.sql": SIMPLE["0001_first.sql"]})
    assert [m.version for m in await apply_migrations(target, load_migrations(backend, folder))] == [1]
    write_migrations(folder, {"0002_second.sql": SIMPLE["0002_second.sql"]})
    assert [m.version for m in await apply_migrations(target, load_migrations(backend, folder))] == [2]
    assert [r[0] for r in await recorded(target)] == [1, 2]
    assert await rows(target, "SELECT y FROM b") == [("seed",)]


def test_files_other_than_sql_are_ignored(tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {**SIMPLE, "README.md": "notes", "0003_draft.sql.bak": "x"})
    assert [m.name for m in load_migrations("sqlite", folder)] == ["0001_first.sql", "0002_second.sql"]


def test_trigger_bodies_stay_one_statement() -> None:
    sql = """
    CREATE TABLE t (x INTEGER, changed REAL);
    -- semicolons inside the trigger must not split it
    CREATE TRIGGER t_touch AFTER UPDATE ON t BEGIN
        UPDATE t SET changed = 1 WHERE rowid = new.rowid;
        SELECT 1;
    END;
    """
    statements = split_statements(sql)
    assert len(statements) == 2
    assert "CREATE TRIGGER" in statements[1] and statements[1].endswith("END;")
    db = sqlite3.connect(":memory:")
    for statement in statements:
        db.execute(statement)
    db.execute("INSERT INTO t (x) VALUES (1)")
    db.execute("UPDATE t SET x = 2")
    assert db.execute("SELECT changed FROM t").fetchall() == [(1,)]
    db.close()


def test_incomplete_statement_is_refused() -> None:
    with pytest.raises(MigrationError) as exc:
        split_statements("CREATE TABLE a (x INTEGER);\nCREATE TABLE b (y")
    assert_one_line(exc, "incomplete")


# -- refusals -----------------------------------------------------------------------------------


async def test_edited_applied_file_is_refused(target: Target, backend: str, tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", SIMPLE)
    await apply_migrations(target, load_migrations(backend, folder))
    (folder / "0002_second.sql").write_text(SIMPLE["0002_second.sql"] + "-- edited\n")
    with pytest.raises(MigrationError) as exc:
        await apply_migrations(target, load_migrations(backend, folder))
    assert_one_line(exc, "0002_second.sql", "changed")
    await no_transaction_left(target)


async def test_edit_is_refused_even_with_new_migrations_pending(target: Target, backend: str, tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {"0001_first.sql": SIMPLE["0001_first.sql"]})
    await apply_migrations(target, load_migrations(backend, folder))
    (folder / "0001_first.sql").write_text("CREATE TABLE a (x INTEGER, z INTEGER);\n")
    write_migrations(folder, {"0002_second.sql": SIMPLE["0002_second.sql"]})
    with pytest.raises(MigrationError):
        await apply_migrations(target, load_migrations(backend, folder))
    assert [r[0] for r in await recorded(target)] == [1]
    assert "b" not in await tables(target)


async def test_database_newer_than_the_code_is_refused(target: Target, backend: str, tmp_path: Path) -> None:
    await apply_migrations(target, load_migrations(backend, write_migrations(tmp_path / "new", SIMPLE)))
    old_code = write_migrations(tmp_path / "old", {"0001_first.sql": SIMPLE["0001_first.sql"]})
    with pytest.raises(MigrationError) as exc:
        await apply_migrations(target, load_migrations(backend, old_code))
    assert_one_line(exc, "0002", "newer")
    await no_transaction_left(target)


async def test_shipped_code_refuses_a_database_from_the_future(
    target: Target, backend: str, database_url: str
) -> None:
    await apply_migrations(target)
    future = len(load_migrations(backend)) + 1
    record_future_migration(database_url, future)
    with pytest.raises(MigrationError) as exc:
        await apply_migrations(target)
    assert_one_line(exc, f"{future:04d}", "newer")


# Refused by the loader, before any database is opened: the same rule for every backend's folder.


def test_gap_is_refused(tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {"0001_a.sql": "SELECT 1;", "0003_c.sql": "SELECT 1;"})
    with pytest.raises(MigrationError) as exc:
        load_migrations("sqlite", folder)
    assert_one_line(exc, "0002", "missing")


def test_not_starting_at_one_is_a_gap(tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {"0002_b.sql": "SELECT 1;"})
    with pytest.raises(MigrationError) as exc:
        load_migrations("sqlite", folder)
    assert_one_line(exc, "0001")


def test_duplicate_number_is_refused(tmp_path: Path) -> None:
    folder = write_migrations(
        tmp_path / "m", {"0001_a.sql": "SELECT 1;", "0002_b.sql": "SELECT 1;", "0002_other.sql": "SELECT 1;"}
    )
    with pytest.raises(MigrationError) as exc:
        load_migrations("sqlite", folder)
    assert_one_line(exc, "duplicate", "0002_b.sql", "0002_other.sql")


@pytest.mark.parametrize("name", ["1_a.sql", "0001-a.sql", "0001_Create.sql", "0001_.sql", "00001_a.sql", "abcd_a.sql"])
def test_badly_named_file_is_refused(tmp_path: Path, name: str) -> None:
    folder = write_migrations(tmp_path / "m", {name: "SELECT 1;"})
    with pytest.raises(MigrationError) as exc:
        load_migrations("sqlite", folder)
    assert_one_line(exc, name)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError) as exc:
        load_migrations("sqlite", tmp_path / "nowhere")
    assert_one_line(exc, "nowhere")


# -- atomicity ----------------------------------------------------------------------------------


async def test_a_migration_failing_half_way_leaves_nothing(target: Target, backend: str, tmp_path: Path) -> None:
    folder = write_migrations(
        tmp_path / "m",
        {
            "0001_first.sql": SIMPLE["0001_first.sql"],
            "0002_broken.sql": (
                "CREATE TABLE half (x INTEGER);\n"
                "INSERT INTO a VALUES (1);\n"
                "ALTER TABLE a ADD COLUMN y INTEGER;\n"
                "INSERT INTO no_such_table VALUES (1);\n"
            ),
        },
    )
    with pytest.raises(MigrationError) as exc:
        await apply_migrations(target, load_migrations(backend, folder))
    assert_one_line(exc, "0002_broken.sql", "no_such_table")
    await no_transaction_left(target)
    # 0001 committed on its own; nothing of 0002 is left, not even its first statements.
    assert [r[0] for r in await recorded(target)] == [1]
    assert "half" not in await tables(target)
    assert await rows(target, "SELECT count(*) AS n FROM a") == [(0,)]
    assert await columns(target, "a") == {"x"}

    # Fixing the file lets it apply (it was never recorded, so its text may change).
    (folder / "0002_broken.sql").write_text("CREATE TABLE half (x INTEGER);\n")
    assert [m.version for m in await apply_migrations(target, load_migrations(backend, folder))] == [2]
    assert "half" in await tables(target)


# -- processes at once ----------------------------------------------------------------------------

_MIGRATE_ONCE = """
import asyncio, sys, time
from pathlib import Path
from jobqueue.settings import database_backend, database_path
from jobqueue.storage.migrate import apply_migrations, load_migrations
from jobqueue.storage.postgres.connection import PgDatabase
from jobqueue.storage.sqlite.connection import Database

async def main(url: str, folder: str, go: str) -> None:
    backend = database_backend(url)
    conn = Database(database_path(url)) if backend == "sqlite" else PgDatabase(url)
    await conn.open()
    try:
        while not Path(go).exists():  # start together, so they really race
            time.sleep(0.005)
        applied = await apply_migrations(conn, load_migrations(backend, Path(folder)) if folder else None)
        print(",".join(str(m.version) for m in applied))
    finally:
        await conn.close()

asyncio.run(main(*sys.argv[1:]))
"""


def _race(tmp_path: Path, database_url: str, folder: str, processes: int = 4) -> list[list[int]]:
    """Start ``processes`` runners on one new database at the same instant; what each applied."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_ONCE, database_url, folder, str(go)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    time.sleep(0.5)  # let every interpreter reach the start line
    go.touch()
    results: list[list[int]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append([int(v) for v in out.strip().split(",") if v])
    return results


def test_processes_racing_on_a_new_database_apply_each_migration_once(tmp_path: Path, database_url: str) -> None:
    # Not idempotent on purpose: a second run of any file would fail or add a second row.
    files = {
        f"{n:04d}_step_{n}.sql": f"CREATE TABLE t{n} (x INTEGER);\nINSERT INTO runs VALUES ({n});\n"
        for n in range(2, 7)
    }
    files["0001_runs.sql"] = "CREATE TABLE runs (version INTEGER);\n"
    folder = write_migrations(tmp_path / "m", files)

    results = _race(tmp_path, database_url, str(folder))

    applied = sorted(v for result in results for v in result)
    assert applied == list(range(1, 7))
    assert sorted(row["version"] for row in run_sql(database_url, "SELECT version FROM runs")) == list(range(2, 7))
    assert applied_versions(database_url) == list(range(1, 7))


def test_processes_racing_with_the_shipped_migrations(tmp_path: Path, backend: str, database_url: str) -> None:
    results = _race(tmp_path, database_url, "")
    shipped = [m.version for m in load_migrations(backend)]
    assert sorted(v for result in results for v in result) == shipped
    assert applied_versions(database_url) == shipped


# -- packaging ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (found,) = out.glob("jobqueue-*.whl")
    return found


def test_wheel_carries_migrations_and_queries(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "jobqueue/storage/sqlite/queries.sql" in names
    assert "jobqueue/storage/postgres/queries.sql" in names
    for backend in ("sqlite", "postgresql"):
        migrations = load_migrations(backend)
        assert migrations
        for migration in migrations:
            assert f"jobqueue/migrations/{backend}/{migration.name}" in names


def test_installed_package_finds_its_migrations(wheel: Path, tmp_path: Path, backend: str, database_url: str) -> None:
    """Outside a checkout: the wheel installed into a bare folder migrates a database on its own."""
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr
    script = (
        "import asyncio, sys, jobqueue.storage.migrate as m\n"
        "from jobqueue.settings import database_backend, database_path\n"
        "from jobqueue.storage.postgres.connection import PgDatabase\n"
        "from jobqueue.storage.sqlite.connection import Database\n"
        "async def main(url):\n"
        "    backend = database_backend(url)\n"
        "    print(m.__file__); print(m.migrations_dir(backend))\n"
        "    conn = Database(database_path(url)) if backend == 'sqlite' else PgDatabase(url)\n"
        "    await conn.open()\n"
        "    print(len(await m.apply_migrations(conn)))\n"
        "    await conn.close()\n"
        "asyncio.run(main(sys.argv[1]))\n"
    )
    env = subprocess_env()
    env["PYTHONPATH"] = str(target)
    run = subprocess.run(
        [sys.executable, "-c", script, database_url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    module_file, folder, count = run.stdout.split()
    assert module_file.startswith(str(target))
    assert folder.startswith(str(target))
    assert int(count) == len(load_migrations(backend))
