"""Faults that must not lose acknowledged work: the database file deleted or replaced under a
running server, a database that can no longer be written, and many stream listeners."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from jobqueue.settings import database_path

from .conftest import assert_error, sqlite_only

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
