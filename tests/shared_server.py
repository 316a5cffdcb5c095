"""One real server shared by the tests of a module (``live_server`` starts one per test).

Starting uvicorn in a subprocess costs seconds on a loaded machine; the client and CLI tests
only need isolation per job, which unique job types give them, so a module shares one server.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port, subprocess_env, wait_for_http


@contextmanager
def running_server(directory: Path, **env: str) -> Iterator[str]:
    """``python -m jobqueue serve`` on a free port with its database in ``directory``."""
    port = free_port()
    full_env = subprocess_env(
        DATABASE_URL=f"sqlite:///{directory / 'jobs.db'}", HOST="127.0.0.1", PORT=str(port), **env
    )
    with open(directory / f"server-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobqueue", "serve", "--log-level", "warning"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/health", proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
