"""Faults that must not lose acknowledged work: the database file deleted or replaced under a
running server, a database that can no longer be written, and many stream listeners."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from jobqueue import events as events_module
from jobqueue.models import JobEvent
from jobqueue.service import JobQueueService
from jobqueue.settings import database_path

from .conftest import assert_error, running_server, sqlite_only

#: Enqueues tried after the file is gone: each must be refused, none acknowledged.
ENQUEUES = 20


def _delete(path: Path) -> None:
    for file in path.parent.glob(path.name + "*"):  # with its -wal and -shm
        file.unlink()


def _replace(path: Path) -> None:
    """A valid copy renamed over the file (a restore from backup): the server's connections keep
    the old inode, so without a check their commits land in a file nobody will open again."""
    copy = path.with_name(path.name + ".restored")
    shutil.copyfile(path, copy)
    os.replace(copy, path)


@sqlite_only
@pytest.mark.parametrize("fault", [_delete, _replace], ids=["deleted", "replaced"])
def test_writes_into_a_lost_database_file_are_refused(
    live_server: Callable[..., str], database_url: str, fault: Callable[[Path], None]
) -> None:
    url = live_server(RUN_WORKER="false")
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.post("/api/jobs", json={"job_type": "faults"}).status_code == 201
        fault(database_path(database_url))
        for _ in range(ENQUEUES):
            body = assert_error(http.post("/api/jobs", json={"job_type": "faults"}), 503)
            assert body["error"] == "database_error"


def _run_as_root(*command: str) -> None:
    """Mounts and file attributes need root (CI runs as root); elsewhere the test says why it
    cannot run."""
    if os.geteuid() != 0:
        pytest.skip(f"{command[0]} needs root (CI runs as root)")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"{' '.join(command)} failed here: {result.stderr.strip()}")


@contextmanager
def _tiny_disk(folder: Path) -> Iterator[Path]:
    """A tmpfs of its own, so the test can fill it without filling the machine's disk."""
    folder.mkdir()
    _run_as_root("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def _fill(path: Path) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"x" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(descriptor)


def _assert_health(http: httpx.Client, status: int) -> dict[str, str]:
    response = http.get("/health")
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


def test_health_reports_a_full_disk(tmp_path: Path) -> None:
    """SQLite only (a file on a disk of its own): not parametrized by backend."""
    with _tiny_disk(tmp_path / "disk") as disk:
        with running_server(tmp_path, f"sqlite:///{disk}/jobs.db", RUN_WORKER="false") as url:
            with httpx.Client(base_url=url, timeout=10) as http:
                assert http.post("/api/jobs", json={"job_type": "faults"}).status_code == 201
                _assert_health(http, 200)
                _fill(disk / "filler")
                big = {"job_type": "faults", "request_data": {"text": "x" * 500_000}}
                assert_error(http.post("/api/jobs", json=big), 503)
                assert "full" in _assert_health(http, 503)["database"]
                (disk / "filler").unlink()
                _assert_health(http, 200)
                assert http.post("/api/jobs", json=big).status_code == 201


@sqlite_only
@pytest.mark.parametrize("suffix", ["-wal", ""], ids=["wal", "database"])
def test_health_reports_a_database_file_that_cannot_be_written(
    live_server: Callable[..., str], database_url: str, suffix: str
) -> None:
    """An immutable WAL fails every commit; an immutable database file every checkpoint."""
    url = live_server(RUN_WORKER="false")
    path = database_path(database_url)
    file = path.with_name(path.name + suffix)
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.post("/api/jobs", json={"job_type": "faults"}).status_code == 201
        _assert_health(http, 200)
        _run_as_root("chattr", "+i", str(file))
        try:
            assert "cannot be written" in _assert_health(http, 503)["database"]
        finally:
            subprocess.run(["chattr", "-i", str(file)], check=True)
        _assert_health(http, 200)


# -- many listeners ---------------------------------------------------------------------------


@pytest.mark.parametrize("listeners", [1, 300])
async def test_an_event_is_encoded_once_whatever_the_number_of_listeners(
    service: JobQueueService, monkeypatch: pytest.MonkeyPatch, listeners: int
) -> None:
    encoded: list[int] = []
    encode = events_module._encode

    def counting(value: Any) -> bytes:
        if isinstance(value, JobEvent):
            encoded.append(value.id)
        return encode(value)

    monkeypatch.setattr(events_module, "_encode", counting)
    with ExitStack() as stack:
        subscriptions = [stack.enter_context(service.events.subscribe(lambda e: True)) for _ in range(listeners)]
        job_id = await service.enqueue_job("faults")
        await service.update_job(job_id, progress=50)
        deliveries = [[await s.receive(timeout=5), await s.receive(timeout=5)] for s in subscriptions]
    ids = [event.id for event in await service.job_events(job_id)]
    assert len(ids) == 2 and encoded == ids  # once per event, not once per listener
    for delivered in deliveries:
        assert [d.event.id for d in delivered if d is not None] == ids
        assert all(d is not None and d.data == msgspec.json.encode(d.event) for d in delivered)


def _open_stream(streams: ExitStack, url: str, source: str = "127.0.0.1") -> httpx.Response:
    """An /api/events stream from the loopback address ``source`` (another client), kept open."""
    http = streams.enter_context(
        httpx.Client(base_url=url, timeout=10, transport=httpx.HTTPTransport(local_address=source))
    )
    return streams.enter_context(http.stream("GET", "/api/events"))


def _assert_refused(response: httpx.Response, status: int) -> None:
    assert response.status_code == status  # before reading: a stream served would never end
    response.read()
    assert assert_error(response, status)["error"] == "too_many_streams"
    assert int(response.headers["retry-after"]) > 0


def test_streams_are_capped_per_client_and_per_process(live_server: Callable[..., str]) -> None:
    url = live_server(RUN_WORKER="false", MAX_STREAMS="3", MAX_STREAMS_PER_CLIENT="2", SSE_KEEPALIVE="0.1")
    with ExitStack() as streams:
        first = ExitStack()
        assert _open_stream(first, url).status_code == 200
        streams.enter_context(first)
        assert _open_stream(streams, url).status_code == 200
        _assert_refused(_open_stream(streams, url), 429)  # a third one from the same client
        assert _open_stream(streams, url, "127.0.0.2").status_code == 200  # another client
        _assert_refused(_open_stream(streams, url, "127.0.0.3"), 503)  # the process is full
        first.close()  # a stream ends: its slot is free again once the server notices
        deadline = time.monotonic() + 10
        while (response := _open_stream(streams, url)).status_code != 200:
            assert time.monotonic() < deadline, response.read()
            time.sleep(0.1)


def test_streams_are_capped_per_key_not_per_address(live_server: Callable[..., str]) -> None:
    """Behind one proxy address, each key has its own allowance of streams."""
    admin = secrets.token_urlsafe(32)
    url = live_server(
        RUN_WORKER="false", MAX_STREAMS="10", MAX_STREAMS_PER_CLIENT="1", SSE_KEEPALIVE="0.1", JOBQUEUE_ADMIN_KEY=admin
    )
    keys = []
    for name in ("dashboard-a", "dashboard-b"):
        created = httpx.post(
            f"{url}/api/keys", json={"name": name, "scopes": ["read"]}, headers={"Authorization": f"Bearer {admin}"}
        )
        assert created.status_code == 201, created.text
        keys.append(created.json()["key"])
    with ExitStack() as streams:
        for key in keys:  # the same address, two keys: one stream each
            http = streams.enter_context(httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {key}"}))
            assert streams.enter_context(http.stream("GET", "/api/events")).status_code == 200
        _assert_refused(streams.enter_context(http.stream("GET", "/api/events")), 429)  # key b's second
