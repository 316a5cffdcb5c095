"""The README's examples run as written against a real server (a new user's first steps)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, subprocess_env

_BLOCK = re.compile(r"<!-- readme-example: (\S+) -->\n```sh\n(.*?)```", re.DOTALL)


def readme_examples() -> dict[str, str]:
    return dict(_BLOCK.findall((ROOT / "README.md").read_text()))


def test_readme_declares_examples() -> None:
    assert "rest" in readme_examples()


@pytest.mark.parametrize("name", sorted(readme_examples()))
def test_readme_example_runs(name: str, live_server: Callable[..., str], tmp_path: Path) -> None:
    url = live_server()
    script = readme_examples()[name].replace("http://127.0.0.1:8000", url)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        # The `jobqueue` script of the venv running the tests (CI runs them under each Python).
        env=subprocess_env(PATH=f"{Path(sys.executable).parent}:{subprocess_env()['PATH']}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"README example {name!r} failed:\n{result.stdout}\n{result.stderr}"
