"""The client commands as a user runs them: real ``jobqueue`` subprocesses against a real server.

Most servers here run no worker, and the test moves jobs itself through the HTTP API, so the
outcome ``wait`` sees is the one the test chose. One test runs the example generation job on the
server's own worker and watches ``wait`` draw its progress bar on a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import free_port, running_server, subprocess_env

SERVER_ENV = {"RUN_WORKER": "false", "SSE_KEEPALIVE": "0.2"}
CEILING = 30.0


def jobqueue(*args: str, url: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue", *args],
        cwd=cwd,
        env=subprocess_env(JOBQUEUE_URL=url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_wait(*args: str, url: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobqueue", "wait", *args],
        cwd=cwd,
        env=subprocess_env(JOBQUEUE_URL=url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def put(url: str, job_id: str, **body: Any) -> None:
    response = httpx.put(f"{url}/api/jobs/{job_id}", json=body)
    assert response.status_code == 200, response.text


def listeners(url: str) -> int:
    """Open event subscriptions of the server, from its metrics."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("jobqueue_event_listeners "):
            return int(float(line.split()[1]))
    raise AssertionError("no jobqueue_event_listeners in /metrics")


def wait_for_listeners(url: str, condition: Callable[[int], bool], timeout: float = CEILING) -> None:
    deadline = time.monotonic() + timeout
    while not condition(listeners(url)):
        if time.monotonic() > deadline:
            raise AssertionError(f"listener count stayed at {listeners(url)}")
        time.sleep(0.05)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jobqueue: error: ")
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[str]:
    """One server per backend for the module; each test uses its own job types."""
    with running_server(tmp_path_factory.mktemp("server"), module_database_url, **SERVER_ENV) as url:
        yield url


def test_enqueue_get_list_stats(server: str, tmp_path: Path) -> None:
    enqueued = jobqueue("enqueue", "cli-a", "--data", '{"w": 64}', "--priority", "3", url=server, cwd=tmp_path)
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()
    assert len(job_id.splitlines()) == 1 and job_id  # only the id, for $(...)

    shown = jobqueue("get", job_id, url=server, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert job_id in shown.stdout and "cli-a" in shown.stdout and "queued" in shown.stdout
    assert '{"w":64}' in shown.stdout

    as_json = json.loads(jobqueue("get", job_id, "--json", url=server, cwd=tmp_path).stdout)
    assert (as_json["id"], as_json["priority"], as_json["request_data"]) == (job_id, 3, {"w": 64})

    from_stdin = jobqueue("enqueue", "cli-a", "--data", "-", "--json", url=server, cwd=tmp_path, stdin='{"h": 1}')
    assert json.loads(from_stdin.stdout)["request_data"] == {"h": 1}
    httpx.post(f"{server}/api/jobs", json={"job_type": "cli-a"}).raise_for_status()

    put(server, job_id, status="completed")
    listed = jobqueue("list", "--json", "--job-type", "cli-a", "--status", "completed", "--status", "failed",
                      url=server, cwd=tmp_path)
    assert [j["id"] for j in json.loads(listed.stdout)["items"]] == [job_id]
    table = jobqueue("list", "--limit", "2", "--job-type", "cli-a", url=server, cwd=tmp_path)
    assert table.returncode == 0 and table.stdout.startswith("ID") and "showing 1-2 of 3" in table.stdout

    stats = json.loads(jobqueue("stats", "--json", "--job-type", "cli-a", url=server, cwd=tmp_path).stdout)
    assert stats["total"] == 3 and stats["by_status"]["completed"] == 1 and stats["by_status"]["queued"] == 2
    text = jobqueue("stats", "--job-type", "cli-a", url=server, cwd=tmp_path)
    assert text.returncode == 0 and "completed  1" in text.stdout


def test_list_searches_by_id_prefix_and_request_data(server: str, tmp_path: Path) -> None:
    ann = jobqueue("enqueue", "cli-search", "--data", '{"user": "ann", "n": 7}', url=server, cwd=tmp_path).stdout.strip()
    bob = jobqueue("enqueue", "cli-search", "--data", '{"user": "bob", "n": 7}', url=server, cwd=tmp_path).stdout.strip()

    def listed(*args: str) -> list[str]:
        result = jobqueue("list", "--json", "--job-type", "cli-search", *args, url=server, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return [job["id"] for job in json.loads(result.stdout)["items"]]

    assert listed("--data", "user=ann") == [ann]
    assert listed("--data", "n=7") == [bob, ann]
    assert listed("--data", "n=7", "--data", "user=bob") == [bob]
    assert listed("--id-prefix", bob[:13]) == [bob]
    assert_one_line_error(jobqueue("list", "--id-prefix", "ab", url=server, cwd=tmp_path), "422", "id_prefix")
    malformed = jobqueue("list", "--data", "user", url=server, cwd=tmp_path)
    assert malformed.returncode == 2 and "FIELD=VALUE" in malformed.stderr


def test_cancel_and_retry(server: str, tmp_path: Path) -> None:
    job_id = jobqueue("enqueue", "cli-b", "--idempotency-key", "t-1", url=server, cwd=tmp_path).stdout.strip()
    again = jobqueue("enqueue", "cli-b", "--idempotency-key", "t-1", url=server, cwd=tmp_path)
    assert again.stdout.strip() == job_id  # the key returned the first job
    cancelled = jobqueue("cancel", job_id, url=server, cwd=tmp_path)
    assert cancelled.returncode == 0 and f"job {job_id} cancelled" in cancelled.stdout
    retried = jobqueue("retry", job_id, "--json", url=server, cwd=tmp_path)
    assert retried.returncode == 0 and json.loads(retried.stdout)["status"] == "queued"
    refused = jobqueue("retry", job_id, url=server, cwd=tmp_path)
    assert_one_line_error(refused, "409", "invalid_transition")


@pytest.mark.parametrize(
    ("outcome", "exit_code", "last_line"),
    [
        ({"status": "completed", "message": "all done"}, 0, "completed: all done"),
        ({"status": "failed", "error": "out of paint"}, 1, "failed: out of paint"),
        ({"status": "cancelled", "message": "not needed"}, 3, "cancelled: not needed"),
    ],
    ids=["completed", "failed", "cancelled"],
)
def test_wait_exit_codes_and_progress_lines(
    server: str, tmp_path: Path, outcome: dict[str, Any], exit_code: int, last_line: str
) -> None:
    job_id = jobqueue("enqueue", "render", url=server, cwd=tmp_path).stdout.strip()
    wait_for_listeners(server, lambda n: n == 0)  # the streams of earlier tests are gone
    # The block closes the pipes and reaps the process even when the test fails half-way.
    with start_wait(job_id, "--timeout", str(CEILING), url=server, cwd=tmp_path) as waiter:
        try:
            wait_for_listeners(server, lambda n: n >= 1)
            put(server, job_id, status="processing", progress=25, message="a quarter")
            put(server, job_id, **outcome)
            stdout, stderr = waiter.communicate(timeout=CEILING)
        finally:
            waiter.kill()
    assert waiter.returncode == exit_code, (stdout, stderr)
    lines = stdout.splitlines()
    # Not a terminal: one plain line per change (status, progress, attempt, elapsed, message),
    # then the outcome.
    assert re.fullmatch(r"queued 0%  \d+\.\ds", lines[0]), lines
    assert any(re.fullmatch(r"processing 25%  attempt 1/3  \d+\.\ds  a quarter", line) for line in lines), lines
    status, detail = last_line.split(": ")
    assert re.fullmatch(rf"job {job_id} {status} after \d+\.\ds: {detail}", lines[-1]), lines
    assert "\r" not in stdout and "\x1b" not in stdout


def test_wait_timeout_exits_124(server: str, tmp_path: Path) -> None:
    job_id = jobqueue("enqueue", "render", url=server, cwd=tmp_path).stdout.strip()
    result = jobqueue("wait", job_id, "--timeout", "0.5", url=server, cwd=tmp_path)
    assert result.returncode == 124
    assert result.stderr.strip() == f"jobqueue: job {job_id} did not finish within 0.5s"


def test_wait_json_prints_only_the_final_job(server: str, tmp_path: Path) -> None:
    job_id = jobqueue("enqueue", "render", url=server, cwd=tmp_path).stdout.strip()
    put(server, job_id, status="completed", result_data={"ok": 1})
    result = jobqueue("wait", job_id, "--json", url=server, cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout)["result_data"] == {"ok": 1}


def test_errors_are_one_line(server: str, tmp_path: Path) -> None:
    assert_one_line_error(jobqueue("get", "nope", url=server, cwd=tmp_path), "404", "nope")
    assert_one_line_error(jobqueue("enqueue", "x", "--data", "{bad", url=server, cwd=tmp_path), "not valid JSON")
    assert_one_line_error(jobqueue("enqueue", "", url=server, cwd=tmp_path), "422", "job_type")


@pytest.mark.parametrize("command", [["enqueue", "thumbnail"], ["wait", "x"]])
def test_server_down_is_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = jobqueue(*command, url=url, cwd=tmp_path)
    assert_one_line_error(result, f"cannot reach {url}")
    assert result.stdout == ""


def test_url_flag_beats_the_environment(server: str, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = jobqueue("stats", "--url", server, "--json", url=dead, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "by_status" in json.loads(result.stdout)


def test_help_lists_the_client_commands(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobqueue", "--help"], env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    for command in ("enqueue", "get", "list", "stats", "cancel", "retry", "wait"):
        assert command in result.stdout
    wait_help = jobqueue("wait", "--help", url="http://unused", cwd=tmp_path).stdout
    for text in ("--timeout", "--url", "JOBQUEUE_URL", "--json", "124"):
        assert text in wait_help


def test_wait_draws_a_moving_bar_on_a_terminal(live_server: Callable[..., str], tmp_path: Path) -> None:
    """The bar on a terminal moves with the progress a worker reports, to 100% and exit 0.

    The server's own worker pool runs the ``gated`` test handler: it reports once, waits for a
    file the test creates once ``wait`` listens, then reports five steps and completes.
    """
    url = live_server(WORKER_REGISTRY="tests.event_handlers:registry", SSE_KEEPALIVE="0.2")
    gate = tmp_path / "gate"
    response = httpx.post(
        f"{url}/api/jobs", json={"job_type": "gated", "request_data": {"gate": str(gate), "steps": 5}}
    )
    job_id = response.json()["id"]
    primary, secondary = pty.openpty()
    errors = tmp_path / "wait.stderr"
    with errors.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobqueue", "wait", job_id, "--timeout", str(CEILING)],
            env=subprocess_env(JOBQUEUE_URL=url, COLUMNS="120"),
            stdout=secondary,
            stderr=stderr,
        )
    os.close(secondary)
    wait_for_listeners(url, lambda n: n >= 1)
    gate.touch()
    output = bytearray()
    deadline = time.monotonic() + CEILING + 10
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                output.extend(chunk)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=CEILING)
    finally:
        proc.kill()
        os.close(primary)
    assert proc.returncode == 0, (bytes(output), errors.read_text())
    text = output.decode()
    frames = [frame for frame in text.split("\r") if frame.strip()]
    # Each redraw clears the line and draws "[####....]  NN% status  message".
    percents = [int(frame.split("]")[1].split("%")[0]) for frame in frames if "]" in frame and "%" in frame]
    assert len(percents) >= 3, text
    assert percents == sorted(percents) and percents[-1] == 100
    assert "completed" in frames[-1] or f"job {job_id} completed" in text
    assert "#" * 10 in text
