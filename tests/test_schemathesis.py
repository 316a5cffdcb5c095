"""OpenAPI and behaviour agree: schemathesis runs every check over every operation of a real
server (``python -m jobqueue serve`` on 127.0.0.1), with a bounded number of examples each
(``tests/schemathesis.toml``; the event streams are read for a second each). Long polls are
shortened by ``tests/schemathesis_hooks.py``.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .conftest import ROOT, subprocess_env

#: A fixed seed: a failure here is a finding to fix, never a different draw each run.
SEED = 20261130


def test_schemathesis_finds_no_failure(live_server: Callable[..., str], tmp_path: Path) -> None:
    # A server that requires a key, as any deployment beyond loopback does: schemathesis sends
    # the admin key, and checks that missing or wrong credentials are refused.
    admin_key = secrets.token_urlsafe(32)
    url = live_server(RUN_WORKER="false", JOBQUEUE_ADMIN_KEY=admin_key)
    command = [
        sys.executable, "-m", "schemathesis.cli",
        "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
        "run", f"{url}/openapi.json",
        # Every check runs (schemathesis's default); not "--checks all", which as a command-line
        # option would override the per-operation settings of schemathesis.toml.
        "--seed", str(SEED),
        "--workers", "1",
        "--no-color",
        "--header", f"Authorization: Bearer {admin_key}",
        # The browser's login form posts a form and answers with redirects: not the JSON API.
        "--exclude-path-regex", "^/log(in|out)$",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=tmp_path,  # its cache and reports stay out of the checkout
        env=subprocess_env(SCHEMATHESIS_HOOKS="tests.schemathesis_hooks"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
