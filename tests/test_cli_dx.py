"""The CLI as people reach for it (issue 13): ``wait`` with attempts and errors, ``enqueue --wait``,
``delete``, ``events``, ``top``, ``check``, quiet broken pipes, one-line mistakes, and the logs
of the server and the worker. Real ``jobqueue`` subprocesses against a real server (and, where
a terminal matters, on a pseudo-terminal)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobqueue.cli_follow import fit
from jobqueue.service import JobQueueService

from .conftest import free_port, make_settings, running_server, stop_process, subprocess_env, wait_for_http
from .helpers import drop_database

CEILING = 30.0
#: The server of most tests: its in-process pool runs only the ``dx-*`` handlers (the other job
#: types of these tests are moved by hand through the API), and a failed attempt is retried soon.
SERVER_ENV = {
    "WORKER_REGISTRY": "tests.dx_handlers:registry",
    "WORKER_JOB_TYPES": "dx-flaky,dx-ok,dx-fail",
    "RETRY_BASE_DELAY": "0.3",
    "SSE_KEEPALIVE": "0.2",
}


def jobqueue(*args: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue", *args],
        env=subprocess_env(JOBQUEUE_URL=url, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def start(*args: str, url: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobqueue", *args],
        env=subprocess_env(JOBQUEUE_URL=url, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def api(method: str, url: str, **kwargs: Any) -> Any:
    response = httpx.request(method, url, timeout=10, **kwargs)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def enqueue(server: str, job_type: str, **body: Any) -> str:
    return str(api("POST", f"{server}/api/jobs", json={"job_type": job_type, **body})["id"])


def listeners(url: str) -> int:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("jobqueue_event_listeners "):
            return int(float(line.split()[1]))
    raise AssertionError("no jobqueue_event_listeners in /metrics")


def wait_for(condition: Callable[[], Any], what: str, timeout: float = CEILING) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def assert_one_line(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


class LineReader:
    """A child's stdout read line by line in a thread, so the test can wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: [self.lines.put(line.rstrip("\n")) for line in stream], daemon=True).start()

    def until(self, predicate: Callable[[str], bool]) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + CEILING
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.append(line)
            if predicate(line):
                return seen
        raise AssertionError(f"no such line; got {seen}")


def read_pty(primary: int, proc: subprocess.Popen[bytes], until: Callable[[bytes], bool]) -> bytes:
    output = bytearray()
    deadline = time.monotonic() + CEILING
    while time.monotonic() < deadline and not until(bytes(output)):
        ready, _, _ = select.select([primary], [], [], 0.2)
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
    return bytes(output)


def on_pty(*args: str, url: str, columns: int = 100) -> tuple[subprocess.Popen[bytes], int]:
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobqueue", *args],
        env=subprocess_env(JOBQUEUE_URL=url, COLUMNS=str(columns)),
        stdout=secondary,
        stderr=subprocess.PIPE,
    )
    os.close(secondary)
    return proc, primary


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[str]:
    """One server per backend for the module; each test uses job types of its own."""
    with running_server(tmp_path_factory.mktemp("server"), module_database_url, **SERVER_ENV) as url:
        yield url


# -- wait and enqueue --wait -------------------------------------------------------------------------


def test_wait_shows_the_attempt_and_last_error_while_it_retries_then_the_result(
    server: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job_id = enqueue(server, "dx-flaky", request_data={"gate": str(gate)})
    before = listeners(server)
    with start("wait", job_id, "--timeout", str(CEILING), url=server) as waiter:
        try:
            wait_for(lambda: listeners(server) > before, "wait to listen")
            gate.touch()
            stdout, stderr = waiter.communicate(timeout=CEILING)
        finally:
            waiter.kill()
    assert waiter.returncode == 0, (stdout, stderr)
    lines = stdout.splitlines()
    # Not a terminal: one plain line per change: status, progress, attempt, elapsed, message.
    # (The server's pool may have claimed the job before wait asked for it.)
    assert re.fullmatch(r"queued 0%  \d+\.\ds|processing 0%  attempt 1/3  \d+\.\ds", lines[0]), lines
    retrying = [line for line in lines if "attempt 1/3 failed" in line]
    assert retrying and all("last error: RuntimeError: flaky on the first try" in line for line in retrying), lines
    second = [line for line in lines if "attempt 2/3" in line and "second try under way" in line]
    assert second and "last error: RuntimeError: flaky on the first try" in second[0], lines
    assert re.fullmatch(
        rf'job {job_id} completed after \d+\.\ds, attempt 2/3: {{"ok":true,"attempt":2}}', lines[-1]
    ), lines[-1]
    assert "\r" not in stdout and "\x1b" not in stdout


def test_enqueue_wait_prints_the_id_then_follows_to_the_outcome(server: str) -> None:
    done = jobqueue("enqueue", "dx-ok", "--data", '{"n": 5}', "--wait", url=server)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    job_id = lines[0]
    assert re.fullmatch(rf'job {job_id} completed after \d+\.\ds, attempt 1/3: {{"n":5}}', lines[-1]), lines

    failed = jobqueue("enqueue", "dx-fail", "--max-attempts", "1", "--wait", url=server)
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.splitlines()[-1].endswith("attempt 1/1: ValueError: bad input")

    quiet = jobqueue("enqueue", "dx-ok", "--wait", "--quiet", url=server)
    assert quiet.returncode == 0 and len(quiet.stdout.splitlines()) == 1  # only the id

    as_json = jobqueue("enqueue", "dx-ok", "--wait", "--json", url=server)
    assert json.loads(as_json.stdout)["status"] == "completed"

    timed_out = jobqueue("enqueue", "dx-nobody-runs-this", "--wait", "--wait-timeout", "0.3", url=server)
    assert timed_out.returncode == 124 and "did not finish within 0.3s" in timed_out.stderr


def test_fit_cuts_between_words() -> None:
    parts = ["[####......]  40% generating_audio", "attempt 2/3", "12.5s", "generated 4.0s of 10s"]
    full = "  ".join(parts)
    assert fit(parts, 200) == full
    for width in range(20, len(full)):
        line = fit(parts, width)
        assert len(line) <= width and line.endswith("...")
        kept = line[: -len("...")]
        # The kept text is the start of the full line and ends at a word's end.
        assert full.startswith(kept) and full[len(kept)] == " ", (width, line)


def test_wait_on_a_narrow_terminal_redraws_a_line_that_fits_and_never_cuts_a_word(
    server: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job_id = enqueue(server, "dx-flaky", request_data={"gate": str(gate)})
    before = listeners(server)
    proc, primary = on_pty("wait", job_id, "--timeout", str(CEILING), url=server, columns=60)
    try:
        wait_for(lambda: listeners(server) > before, "wait to listen")
        gate.touch()
        output = read_pty(primary, proc, lambda out: b"completed after" in out)
        proc.wait(timeout=CEILING)
    finally:
        proc.kill()
        os.close(primary)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == 0, output
    text = output.decode()
    *frames, last = [f.replace("\x1b[2K", "") for f in text.split("\r") if f.strip()]
    words = set(
        "queued processing completed attempt 1/3 2/3 failed last error: RuntimeError: flaky on the first try "
        "second under way".split()
    )
    assert frames
    for frame in frames:
        frame = frame.rstrip("\n")
        assert len(frame) <= 59, frame
        body = frame.split("] ", 1)[1]  # after the bar
        tokens = body.removesuffix("...").split()
        for token in tokens:
            assert token in words or re.fullmatch(r"\d+%|\d+\.\ds", token), (token, frame)
    assert any(frame.rstrip("\n").endswith("...") for frame in frames), frames  # the error did not fit
    assert f"job {job_id} completed after" in last


# -- delete, list, get | head ------------------------------------------------------------------------


def test_delete_a_finished_job(server: str) -> None:
    job_id = enqueue(server, "dx-delete")
    refused = jobqueue("delete", job_id, url=server)
    assert refused.returncode == 2 and "409" in refused.stderr
    assert_one_line(refused.stderr, job_id)
    api("PUT", f"{server}/api/jobs/{job_id}", json={"status": "cancelled"})
    deleted = jobqueue("delete", job_id, url=server)
    assert (deleted.returncode, deleted.stdout) == (0, f"job {job_id} deleted\n"), deleted.stderr
    assert httpx.get(f"{server}/api/jobs/{job_id}").status_code == 404
    again = jobqueue("delete", job_id, url=server)
    assert again.returncode == 2 and "404" in again.stderr


def test_list_of_failed_jobs_shows_their_errors(server: str) -> None:
    failed = enqueue(server, "dx-list")
    api("PUT", f"{server}/api/jobs/{failed}", json={"status": "failed", "error": "disk full on /data"})
    queued = enqueue(server, "dx-list")
    table = jobqueue("list", "--job-type", "dx-list", url=server)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[-3:] == ["ERROR", "/", "MESSAGE"]
    assert next(row for row in rows if row.startswith(failed)).endswith("disk full on /data")
    assert next(row for row in rows if row.startswith(queued))
    only_failed = jobqueue("list", "--status", "failed", "--job-type", "dx-list", url=server).stdout
    assert "disk full on /data" in only_failed and queued not in only_failed


def test_a_reader_that_goes_away_ends_the_command_quietly(server: str) -> None:
    job_id = enqueue(server, "dx-pipe", request_data={"text": "x" * 70_000})
    # The reading end is closed before the command writes: every write fails with EPIPE.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "jobqueue", "get", job_id],
            env=subprocess_env(JOBQUEUE_URL=server),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")
    # And as people type it.
    shell = subprocess.run(
        f"{sys.executable} -m jobqueue get {job_id} | head -1",
        shell=True,
        env=subprocess_env(JOBQUEUE_URL=server),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.stdout.startswith("id") and shell.stderr == ""


# -- events and top ----------------------------------------------------------------------------------


def test_events_tails_every_job_and_stops_on_ctrl_c(server: str) -> None:
    before = listeners(server)
    with start("events", "--job-type", "dx-events", url=server) as tail:
        try:
            reader = LineReader(tail)
            wait_for(lambda: listeners(server) > before, "events to listen")
            enqueue(server, "dx-other")  # another type: not shown
            job_id = enqueue(server, "dx-events")
            api("POST", f"{server}/api/jobs/{job_id}/progress", json={"progress": 30, "message": "a third"})
            api("PUT", f"{server}/api/jobs/{job_id}", json={"status": "failed", "error": "out of ink"})
            lines = reader.until(lambda line: " failed " in line)
            tail.send_signal(signal.SIGINT)
            tail.wait(timeout=CEILING)
        finally:
            tail.kill()
        stderr = tail.stderr.read() if tail.stderr else ""
    assert [line.split()[2:4] for line in lines] == [
        [job_id, "dx-events"],
        [job_id, "dx-events"],
        [job_id, "dx-events"],
    ], lines
    assert [line.split()[4] for line in lines] == ["created", "progress", "failed"]
    assert "queued 30%  a third" in lines[1] and lines[2].endswith("error: out of ink")
    assert tail.returncode == 130 and stderr == "", stderr


def test_events_of_one_job_replays_its_history_and_ends_with_it(server: str) -> None:
    job_id = enqueue(server, "dx-history")
    api("PUT", f"{server}/api/jobs/{job_id}", json={"status": "completed", "result_data": {"ok": 1}})
    text = jobqueue("events", "--job", job_id, url=server)
    assert text.returncode == 0, text.stderr
    assert [line.split()[4] for line in text.stdout.splitlines()] == ["created", "completed"]
    as_json = jobqueue("events", "--job", job_id, "--json", url=server)
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(e["seq"], e["kind"]) for e in events] == [(1, "created"), (2, "completed")]


def test_top_prints_counts_by_type_once_when_not_on_a_terminal(server: str) -> None:
    for _ in range(2):
        enqueue(server, "dx-top")
    done = enqueue(server, "dx-top")
    api("PUT", f"{server}/api/jobs/{done}", json={"status": "completed"})
    result = jobqueue("top", "--job-type", "dx-top-empty", url=server)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("TYPE"))
    assert header.split() == ["TYPE", "WAITING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TOTAL"]
    assert next(line for line in lines if line.startswith("dx-top ")).split()[1:] == ["2", "0", "1", "0", "0", "3"]
    assert next(line for line in lines if line.startswith("dx-top-empty")).split()[1:] == ["0"] * 6
    assert "\x1b" not in result.stdout
    as_json = json.loads(jobqueue("top", "--json", url=server).stdout)
    assert as_json["by_type"]["dx-top"]["total"] == 3


def test_top_on_a_terminal_refreshes_until_ctrl_c(server: str) -> None:
    enqueue(server, "dx-top-live")
    proc, primary = on_pty("top", "--interval", "0.2", url=server)
    try:
        first = read_pty(primary, proc, lambda out: out.count(b"\x1b[H") >= 1 and b"dx-top-live" in out)
        assert b"dx-top-live" in first
        enqueue(server, "dx-top-live")
        later = read_pty(primary, proc, lambda out: re.search(rb"dx-top-live +2 ", out) is not None)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=CEILING)
        stderr = proc.stderr.read() if proc.stderr else b""
    finally:
        proc.kill()
        os.close(primary)
        if proc.stderr is not None:
            proc.stderr.close()
    assert re.search(rb"dx-top-live +2 ", later), later
    assert proc.returncode == 130 and b"Traceback" not in stderr, stderr


# -- check -------------------------------------------------------------------------------------------


def test_check_is_zero_when_healthy_and_one_with_a_reason_otherwise(
    live_server: Callable[..., str], database_url: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = jobqueue("check", url=dead)
    assert unreachable.returncode == 1
    assert_one_line(unreachable.stderr, "unhealthy", f"cannot reach {dead}")

    broken = live_server(RUN_WORKER="false")
    healthy = jobqueue("check", url=broken)
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("ok: database ok")
    drop_database(database_url)
    sick = jobqueue("check", url=broken)
    assert sick.returncode == 1, sick.stdout
    assert_one_line(sick.stderr, "unhealthy", "HTTP 503", "database error")


# -- mistakes are one line ---------------------------------------------------------------------------


def test_a_worker_for_a_type_without_a_handler_is_one_line(tmp_path: Path) -> None:
    result = jobqueue(
        "worker", "--job-types", "thumbnail", "--database-url", f"sqlite:///{tmp_path / 'jobs.db'}", url="http://unused"
    )
    assert result.returncode == 2
    assert_one_line(result.stderr, "--job-types", "no handler registered for thumbnail", "--registry")


@pytest.mark.parametrize("flag", ["--completed-days", "--retention-completed-days", "--failed-days"])
def test_a_bad_retention_value_names_the_flag_as_typed(tmp_path: Path, flag: str) -> None:
    result = jobqueue("prune", flag, "soon", "--database-url", f"sqlite:///{tmp_path / 'jobs.db'}", url="http://unused")
    assert result.returncode == 2
    assert_one_line(result.stderr, f"{flag} must be a number, got 'soon'")


# -- what the server and the worker log --------------------------------------------------------------


async def _queue(database_url: str, *jobs: tuple[str, int]) -> list[str]:
    async with JobQueueService.open(make_settings(database_url)) as service:
        created = [await service.create_job(job_type, {}, 0, max_attempts=attempts) for job_type, attempts in jobs]
    return [job.id for job, _ in created]


def run_burst_worker(database_url: str, log_level: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "jobqueue", "worker", "--burst", "--log-level", log_level,
         "--registry", "tests.dx_handlers:registry", "--job-types", "dx-ok,dx-fail", "--concurrency", "3"],
        env=subprocess_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


async def test_the_worker_logs_a_banner_and_one_line_per_finished_job(database_url: str) -> None:
    ok, failed, retried = await _queue(database_url, ("dx-ok", 3), ("dx-fail", 1), ("dx-fail", 2))
    log = await asyncio.to_thread(run_burst_worker, database_url, "debug")
    assert re.search(r"INFO jobqueue: worker \S+: concurrency 3, job types dx-ok,dx-fail; database ", log), log
    assert re.search(rf"INFO jobqueue.worker: job {ok} dx-ok completed in \d+\.\d{{3}}s \(attempt 1/3\)\n", log), log
    assert re.search(
        rf"job {failed} dx-fail failed in \d+\.\d{{3}}s \(attempt 1/1\): ValueError: bad input\n", log
    ), log
    # A failed attempt with attempts left says so.
    assert re.search(rf"job {retried} dx-fail failed \(will retry\) in \S+ \(attempt 1/2\): ValueError", log), log
    # --log-level debug shows jobqueue's debug lines, not each query of the database driver.
    drivers = ("aiosqlite", "asyncpg")
    assert not [line for line in log.splitlines() if " DEBUG " in line and line.split(" ")[3].rstrip(":") in drivers]


# SQLite only (overrides the backend fixture's parameters): asyncpg has no debug lines to show,
# aiosqlite logs every call.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_trace_shows_the_database_drivers_debug_lines_too(database_url: str, backend: str) -> None:
    await _queue(database_url, ("dx-ok", 1))
    log = await asyncio.to_thread(run_burst_worker, database_url, "trace")
    assert " DEBUG aiosqlite: " in log


def test_the_server_banner_names_its_database_without_password_and_its_pages(
    tmp_path: Path, database_url: str, backend: str
) -> None:
    if backend == "postgresql":
        # Trust authentication ignores the password; the banner must not show it.
        database_url = database_url.replace("postgres@", "postgres:hunter2secret@", 1)
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobqueue", "serve", "--port", str(port), "--log-level", "info"],
            env=subprocess_env(DATABASE_URL=database_url, RUN_WORKER="true", WORKER_CONCURRENCY="4"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc=proc)
    finally:
        stop_process(proc)
    text = log_path.read_text()
    banner = next(line for line in text.splitlines() if f"on 127.0.0.1:{port}: database" in line)
    assert "hunter2secret" not in text
    assert "Redis not configured" in banner and "worker pool of 4 for generation" in banner
    assert f"dashboard http://127.0.0.1:{port}/dashboard, API docs http://127.0.0.1:{port}/docs" in banner
