"""Authentication as an operator meets it, with real processes on every backend: ``jobqueue
keys``, what ``serve`` does without a key, and a real server with keys (the CLI client's
``--api-key``, the browser's login cookie on an event stream)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from .conftest import free_port, stop_process, subprocess_env, wait_for_http


def jobqueue(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue", *args],
        cwd=cwd,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def create_key(database_url: str, cwd: Path, *args: str) -> str:
    result = jobqueue("keys", "create", *args, cwd=cwd, DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_keys_create_prints_only_the_key_then_list_and_revoke(database_url: str, tmp_path: Path) -> None:
    created = jobqueue(
        "keys", "create", "--name", "ci", "--scope", "worker", "--scope", "read", "--job-type", "a",
        cwd=tmp_path, DATABASE_URL=database_url,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("\n") == 1 and created.stdout.startswith("jq_")
    key = created.stdout.strip()

    listed = jobqueue("keys", "list", cwd=tmp_path, DATABASE_URL=database_url)
    assert listed.returncode == 0 and "ci" in listed.stdout and "read,worker" in listed.stdout
    assert key not in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    as_json = json.loads(jobqueue("keys", "list", "--json", cwd=tmp_path, DATABASE_URL=database_url).stdout)
    assert [(k["name"], k["job_types"], k["revoked_at"]) for k in as_json] == [("ci", ["a"], None)]

    duplicate = jobqueue("keys", "create", "--name", "ci", "--scope", "read", cwd=tmp_path, DATABASE_URL=database_url)
    assert duplicate.returncode == 2 and duplicate.stderr.count("\n") == 1 and "ci" in duplicate.stderr

    revoked = jobqueue("keys", "revoke", "ci", cwd=tmp_path, DATABASE_URL=database_url)
    assert revoked.returncode == 0 and as_json[0]["id"] in revoked.stdout
    gone = jobqueue("keys", "revoke", "ci", cwd=tmp_path, DATABASE_URL=database_url)
    assert gone.returncode == 2 and "ci" in gone.stderr and "Traceback" not in gone.stderr


def test_serve_beyond_loopback_without_a_key_refuses_in_one_line(database_url: str, tmp_path: Path) -> None:
    result = jobqueue("serve", "--host", "0.0.0.0", "--port", str(free_port()), cwd=tmp_path, DATABASE_URL=database_url)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    for needle in ("0.0.0.0", "jobqueue keys create", "JOBQUEUE_ADMIN_KEY", "--insecure-no-auth"):
        assert needle in result.stderr


def _serve(tmp_path: Path, database_url: str, *args: str, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobqueue", "serve", "--no-worker", "--port", str(port), *args],
            cwd=tmp_path,
            env=subprocess_env(DATABASE_URL=database_url, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for_http(f"http://127.0.0.1:{port}/health", proc=proc)
    return proc, log


def test_the_banner_says_whether_authentication_is_on(database_url: str, tmp_path: Path) -> None:
    proc, log = _serve(tmp_path, database_url, "--host", "127.0.0.1")
    stop_process(proc)
    assert "authentication is OFF" in log.read_text()

    proc, log = _serve(tmp_path, database_url, "--host", "0.0.0.0", "--insecure-no-auth")
    stop_process(proc)
    assert "authentication is OFF" in log.read_text()

    create_key(database_url, tmp_path, "--name", "admin", "--scope", "admin")
    proc, log = _serve(tmp_path, database_url, "--host", "0.0.0.0")
    try:
        port = log.name.split("-")[1].split(".")[0]
        assert httpx.get(f"http://127.0.0.1:{port}/api/jobs").status_code == 401
    finally:
        stop_process(proc)
    assert "authentication is on" in log.read_text()


def test_a_server_with_keys_serves_the_cli_client_and_a_logged_in_event_stream(
    database_url: str, tmp_path: Path, live_server: Callable[..., str]
) -> None:
    producer = create_key(database_url, tmp_path, "--name", "producer", "--scope", "enqueue")
    viewer = create_key(database_url, tmp_path, "--name", "viewer", "--scope", "read")
    url = live_server()

    refused = jobqueue("enqueue", "t", "--url", url, cwd=tmp_path, JOBQUEUE_API_KEY="")
    assert refused.returncode == 2 and "401" in refused.stderr and refused.stderr.count("\n") == 1
    by_flag = jobqueue("enqueue", "t", "--url", url, "--api-key", producer, cwd=tmp_path)
    assert by_flag.returncode == 0, by_flag.stderr
    by_env = jobqueue("get", by_flag.stdout.strip(), "--url", url, cwd=tmp_path, JOBQUEUE_API_KEY=producer)
    assert by_env.returncode == 0 and "queued" in by_env.stdout

    # The browser: log in with the form, then follow /api/events with only the cookie, as an
    # EventSource does.
    with httpx.Client(base_url=url) as browser:
        login = browser.post("/login", data={"key": viewer, "next": "/dashboard"}, headers={"sec-fetch-site": "same-origin"})
        assert login.status_code == 303 and "jobqueue_session" in browser.cookies
        assert viewer not in login.headers["set-cookie"]
        with browser.stream("GET", "/api/events", headers={"accept": "text/event-stream"}, timeout=30) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            job = httpx.post(f"{url}/api/jobs", json={"job_type": "seen-live"}, headers={"authorization": f"Bearer {producer}"})
            assert job.status_code == 201
            deadline = time.monotonic() + 20
            received = ""
            while '"seen-live"' not in received and time.monotonic() < deadline:
                received += next(lines) + "\n"
            assert f'"job_id":"{job.json()["id"]}"' in received


def test_docker_compose_ships_with_a_key_from_an_env_file() -> None:
    import yaml

    from .conftest import ROOT

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["api"]["env_file"] == ".env"
    assert compose["services"]["api"]["environment"]["HOST"] == "0.0.0.0"
    example = (ROOT / ".env.example").read_text()
    assert "\nJOBQUEUE_ADMIN_KEY=" in example
    assert ".env" in (ROOT / ".gitignore").read_text().split()
