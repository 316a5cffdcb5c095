"""The command line as a user meets it: help, migrate, one-line errors, and a real server."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import jobqueue
from jobqueue.storage import open_store
from jobqueue.storage.migrate import load_migrations

from .conftest import make_settings, subprocess_env
from .helpers import applied_versions, count_rows, record_future_migration


def run_cli(*args: str, cwd: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue", *args],
        cwd=cwd,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- help ---------------------------------------------------------------------------------------


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("serve", "worker", "migrate"):
        assert command in result.stdout


def test_version(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert jobqueue.__version__ in result.stdout


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("serve", ["--host", "--port", "--database-url", "--no-worker", "--debug", "--concurrency", "DATABASE_URL", "PORT"]),
        ("worker", ["--database-url", "--concurrency", "--job-types", "--burst", "--registry", "--lease-seconds"]),
        ("migrate", ["--database-url", "DATABASE_URL", "--synchronous"]),
    ],
)
def test_command_help_explains_the_options(tmp_path: Path, command: str, options: list[str]) -> None:
    result = run_cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert f"usage: jobqueue {command}" in result.stdout
    for option in options:
        assert option in result.stdout, option
    assert not list(tmp_path.iterdir()), "help must not create a database"


# -- migrate ------------------------------------------------------------------------------------


def test_migrate_applies_and_exits_zero(tmp_path: Path, backend: str, database_url: str) -> None:
    result = run_cli("migrate", cwd=tmp_path, DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    shipped = len(load_migrations(backend))
    assert f"applied {shipped} migration" in result.stdout
    assert applied_versions(database_url) == list(range(1, shipped + 1))
    assert count_rows(database_url, "jobs") == 0

    again = run_cli("migrate", "--database-url", database_url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "applied 0 migration" in again.stdout


def test_relative_database_url_is_relative_to_the_working_directory(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, DATABASE_URL="sqlite:///./here.db")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "here.db").is_file()


# -- one-line errors ------------------------------------------------------------------------------


def _garbage_file(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "garbage.db").write_bytes(b"not sqlite at all " * 300)
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'garbage.db'}"}


BAD_CONFIG: dict[str, Callable[[Path], dict[str, str]]] = {
    "unreachable-postgres": lambda tmp: {"DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/jobs"},
    "memory-url": lambda tmp: {"DATABASE_URL": "sqlite:///:memory:"},
    "port-not-a-number": lambda tmp: {"PORT": "abc", "DATABASE_URL": f"sqlite:///{tmp / 'jobs.db'}"},
    "port-out-of-range": lambda tmp: {"PORT": "70000", "DATABASE_URL": f"sqlite:///{tmp / 'jobs.db'}"},
    "debug-not-a-bool": lambda tmp: {"DEBUG": "maybe", "DATABASE_URL": f"sqlite:///{tmp / 'jobs.db'}"},
    "redis-url-scheme": lambda tmp: {"REDIS_URL": "http://x", "DATABASE_URL": f"sqlite:///{tmp / 'jobs.db'}"},
    "missing-folder": lambda tmp: {"DATABASE_URL": f"sqlite:///{tmp / 'no' / 'such' / 'jobs.db'}"},
    "folder-as-database": lambda tmp: {"DATABASE_URL": f"sqlite:///{tmp}"},
    "garbage-file": _garbage_file,
}


# Every case through `migrate`; the start-up paths of `serve` and `worker` with the cases that fail
# at different stages (parsing, opening the file), to keep the suite quick.
_STAGES = ["unreachable-postgres", "port-not-a-number", "missing-folder", "folder-as-database"]


@pytest.mark.parametrize(
    ("command", "case"),
    [("migrate", case) for case in sorted(BAD_CONFIG)]
    + [(command, case) for command in ("serve", "worker") for case in _STAGES],
)
def test_bad_configuration_is_one_line_without_traceback(tmp_path: Path, command: str, case: str) -> None:
    env = BAD_CONFIG[case](tmp_path)
    args = [command, "--burst"] if command == "worker" else [command]
    result = run_cli(*args, cwd=tmp_path, RUN_WORKER="false", **env)
    assert_one_line_error(result)
    assert not (tmp_path / "no").exists()


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jobqueue: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("command", ["migrate", "serve", "worker"])
async def test_database_newer_than_the_code_is_one_line(tmp_path: Path, database_url: str, command: str) -> None:
    async with open_store(make_settings(database_url)):
        pass  # migrated
    record_future_migration(database_url, 999)
    args = [command, "--burst"] if command == "worker" else [command]
    result = run_cli(*args, cwd=tmp_path, RUN_WORKER="false", DATABASE_URL=database_url)
    assert_one_line_error(result, "0999", "newer")


def test_bad_cli_flag_value_is_one_line(tmp_path: Path) -> None:
    # Without a command the options go to `serve`.
    result = run_cli("--port", "abc", cwd=tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}")
    assert result.returncode != 0
    assert result.stderr.strip() == "jobqueue: error: --port must be an integer, got 'abc'"


def test_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("serve", "--log-level", "chatty", cwd=tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--log-level" in result.stderr.strip().splitlines()[-1]


def test_unknown_registry_is_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "worker", "--burst", "--registry", "no_such_module:registry", cwd=tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}",
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_module" in lines[0], result.stderr


# -- a real server ---------------------------------------------------------------------------------


def test_live_server_serves_jobs_and_runs_generation(live_server: Callable[..., str]) -> None:
    base = live_server()
    with httpx.Client(base_url=base, timeout=10) as http:
        created = http.post("/api/jobs/", json={"job_type": "report-without-handler", "request_data": {"month": 11}})
        assert created.status_code == 201
        job = created.json()
        fetched = http.get(f"/api/jobs/{job['id']}")
        assert fetched.status_code == 200
        assert fetched.json()["request_data"] == {"month": 11}
        assert http.get("/health").json()["database"] == "ok"

        generation = http.post("/api/generate", json={"prompt": "a lighthouse in fog", "duration": 2})
        assert generation.status_code == 201
        gen_id = generation.json()["id"]
        deadline = time.monotonic() + 30
        current = generation.json()
        seen: set[str] = set()
        while current["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.05)
            current = http.get(f"/api/jobs/{gen_id}").json()
            seen.add(current["status"])
        assert current["status"] == "completed", current
        assert current["progress"] == 100
        assert current["result_data"]["prompt"] == "a lighthouse in fog"
        assert current["result_data"]["duration"] == 2
        assert current["started_at"] is not None and current["completed_at"] is not None
        assert current["worker_id"]
        # The report job has no handler in the example registry: it is still waiting, untouched.
        assert http.get(f"/api/jobs/{job['id']}").json()["status"] == "queued"


def test_unreachable_postgresql_stops_with_one_line_naming_it_without_the_password(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, DATABASE_URL="postgresql://nobody:secret@127.0.0.1:1/jobs")
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("jobqueue: error: cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:1/jobs")
    assert "secret" not in result.stderr
