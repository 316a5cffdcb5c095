"""The compose stack, checked without a container engine (none runs on these machines).

1. ``docker-compose.yml`` and ``docker-compose.postgres.yml`` validate against the Compose
   Specification's JSON schema (the copy check-jsonschema ships as ``vendor.compose-spec``).
2. Each service's ``command`` runs as a local process with that service's environment, as a
   container would get it (the image's ``ENV``, then ``env_file``, then ``environment``), in
   ``depends_on`` order, and its health check (or, for the worker, a job it must run) decides
   whether it is up: a wrong flag, variable, path or health check fails here.

What stands in for the containers: the image's ``python`` is this virtualenv's interpreter (the
image's entrypoint is ``python -m jobqueue``); a named volume is a folder under ``tmp_path``; a
service's host name with a container port (``redis:6379``, ``127.0.0.1:8000`` inside the API's
own container) becomes ``127.0.0.1`` with a free port; Redis is the local ``redis-server`` on that
port, and the ``postgres`` service is the test PostgreSQL server with a database of the test's
own. ``.env`` is made as ``.env.example`` tells the user to make it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .conftest import IN_CI, ROOT, free_port, stop_process

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.postgres.yml")
#: Seconds a service gets to pass its health check (compose would give interval x retries).
HEALTHY_WITHIN = 30.0


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_files_validate_against_the_compose_specification() -> None:
    result = check_jsonschema(*(ROOT / name for name in COMPOSE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_mistake(tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace("    stop_grace_period: 30s\n", "    stop_grace_periode: 30s\n", 1))
    result = check_jsonschema(broken)
    assert result.returncode != 0 and "stop_grace_periode" in result.stdout, result.stdout


# -- the stack as local processes ------------------------------------------------------------------


def merge(base: Any, layer: Any) -> Any:
    """Compose's merge of a later file: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(layer, dict):
        return {key: merge(base[key], value) if key in base else value for key, value in {**base, **layer}.items()}
    return layer


def load_stack(*names: str) -> dict[str, Any]:
    stack: dict[str, Any] = {}
    for name in names:
        stack = merge(stack, yaml.safe_load((ROOT / name).read_text()))
    return stack


def image_env() -> dict[str, str]:
    """The Dockerfile's ``ENV`` lines (``ENV A=b C=d``)."""
    env: dict[str, str] = {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            env.update(item.split("=", 1) for item in line[4:].split())  # type: ignore[misc]
    return env


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines, comments and blank lines skipped; a later line wins, as in compose."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def make_env_file(folder: Path, *, with_key: bool) -> Path:
    """``.env`` as ``.env.example`` says to make it: copied, then the key appended by the command
    the file gives (run as written)."""
    example = (ROOT / ".env.example").read_text()
    env_file = folder / ".env"
    env_file.write_text(example)
    if with_key:
        command = next(line.lstrip("# ").strip() for line in example.splitlines() if ">> .env" in line)
        subprocess.run(["bash", "-c", command], cwd=folder, check=True, timeout=30)
    return env_file


class LocalStack:
    """The services of a compose file as local processes (see the module's docstring)."""

    def __init__(self, stack: dict[str, Any], folder: Path, env_file: Path, postgres_url: str | None) -> None:
        self.services: dict[str, Any] = stack["services"]
        self.folder = folder
        self.env_file = env_file
        self.postgres_url = postgres_url
        #: "service:container port" -> local port.
        self.ports = {f"{name}:{port}": free_port() for name, port in self._container_ports()}
        self.volumes = {name: folder / "volumes" / name for name in stack.get("volumes", {})}
        for path in self.volumes.values():
            path.mkdir(parents=True)

    def _container_ports(self) -> Iterator[tuple[str, str]]:
        for name, service in self.services.items():
            for mapping in service.get("ports", []):
                yield name, str(mapping).rsplit(":", 1)[-1]
        yield "redis", "6379"  # the image's own port, reached by the others as redis:6379

    def localize(self, service: str, value: str) -> str:
        """A value as it reads inside ``service``'s container, made to work on this machine."""
        if self.postgres_url is not None:
            value = re.sub(r"postgresql://[^@/]+@postgres:5432/\w+", self.postgres_url, value)
        for target, port in self.ports.items():
            name, container_port = target.split(":")
            value = value.replace(f"{name}:{container_port}", f"127.0.0.1:{port}")
            if name == service:  # its own port, as the container itself reaches it
                value = value.replace(f"127.0.0.1:{container_port}", f"127.0.0.1:{port}")
                value = value.replace(f"localhost:{container_port}", f"127.0.0.1:{port}")
                if value == container_port:
                    value = str(port)  # PORT=8000
        for volume, path in self.volumes.items():
            for mount in self.services[service].get("volumes", []):
                source, _, target = str(mount).partition(":")
                if source == volume:
                    value = value.replace(target, str(path))
        return value

    def environment(self, name: str) -> dict[str, str]:
        service = self.services[name]
        env: dict[str, str] = dict(image_env()) if "build" in service else {}
        if "env_file" in service:
            env.update(read_env_file(self.env_file))
        env.update({key: str(value) for key, value in (service.get("environment") or {}).items()})
        local = {key: self.localize(name, value) for key, value in env.items()}
        return {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", **local}

    def argv(self, name: str, words: list[str]) -> list[str]:
        words = [self.localize(name, str(word)) for word in words]
        if words[0] == "python":
            return [sys.executable, *words[1:]]
        if words[0] == "redis-server":
            return [*words, "--port", str(self.ports["redis:6379"]), "--bind", "127.0.0.1"]
        if words[0] == "redis-cli":
            return [words[0], "-p", str(self.ports["redis:6379"]), *words[1:]]
        if words[0] == "pg_isready":
            return [words[0], "-h", "127.0.0.1", *words[1:]]
        return words

    def start(self, name: str) -> subprocess.Popen[bytes]:
        service = self.services[name]
        command = service.get("command")
        assert command, f"service {name} has no command to run"
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - the child keeps its copy
        with log:
            return subprocess.Popen(
                self.argv(name, command), env=self.environment(name), cwd=self.folder, stdout=log, stderr=log
            )

    def healthcheck(self, name: str) -> list[str]:
        test = self.services[name]["healthcheck"]["test"]
        if test[0] == "CMD-SHELL":
            return self.argv(name, test[1].split())
        assert test[0] == "CMD", test
        return self.argv(name, test[1:])

    def wait_healthy(self, name: str, proc: subprocess.Popen[bytes] | None) -> subprocess.CompletedProcess[str]:
        deadline = time.monotonic() + HEALTHY_WITHIN
        while True:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}: {self.log(name)}")
            result = subprocess.run(
                self.healthcheck(name), env=self.environment(name), capture_output=True, text=True, timeout=30
            )
            if result.returncode == 0:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not healthy: {result.stdout}{result.stderr}\nlog: {self.log(name)}")
            time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def order(self) -> list[str]:
        """Services in ``depends_on`` order."""
        done: list[str] = []

        def visit(name: str) -> None:
            for dependency in self.services[name].get("depends_on", {}):
                visit(dependency)
            if name not in done:
                done.append(name)

        for name in self.services:
            visit(name)
        return done


@contextmanager
def running(stack: LocalStack) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Every service started in order, each once its dependencies are healthy."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    with ExitStack() as stop:
        for name in stack.order():
            service = stack.services[name]
            for dependency, rule in (service.get("depends_on") or {}).items():
                if rule.get("condition") == "service_healthy":
                    stack.wait_healthy(dependency, processes.get(dependency))
            if name == "postgres":
                continue  # the test's PostgreSQL server stands in for it
            processes[name] = stack.start(name)
            stop.callback(stop_process, processes[name], 30)
        yield processes


@pytest.fixture
def local_tools() -> None:
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"{', '.join(missing)} needed in CI")
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.fixture(params=[COMPOSE_FILES[:1], COMPOSE_FILES], ids=["sqlite", "postgresql"])
def compose_files(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return tuple(request.param)


@pytest.mark.slow
def test_the_stack_starts_passes_its_health_checks_and_runs_a_job(
    tmp_path: Path, compose_files: tuple[str, ...], local_tools: None, request: pytest.FixtureRequest
) -> None:
    postgres_url = None
    with ExitStack() as cleanup:
        if "docker-compose.postgres.yml" in compose_files:
            from .conftest import postgres_database

            postgres_url = cleanup.enter_context(postgres_database(request.getfixturevalue("postgres_admin_url")))
            assert shutil.which("pg_isready"), "pg_isready (postgresql-client) runs the postgres health check"
        env_file = make_env_file(tmp_path, with_key=True)
        key = read_env_file(env_file)["JOBQUEUE_ADMIN_KEY"]
        assert len(key) >= 32
        stack = LocalStack(load_stack(*compose_files), tmp_path, env_file, postgres_url)
        with running(stack) as processes:
            health = stack.wait_healthy("api", processes["api"])
            assert health.stdout.startswith("ok: database ok, redis ok"), health.stdout
            api = f"http://127.0.0.1:{stack.ports['api:8000']}"
            # Shipped with a key: not open.
            assert httpx.get(f"{api}/api/jobs", timeout=10).status_code == 401
            auth = {"authorization": f"Bearer {key}"}
            created = httpx.post(f"{api}/api/generate", json={"prompt": "rain", "duration": 1}, headers=auth, timeout=10)
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            # The API runs no pool (--no-worker): only the worker service can finish the job.
            deadline = time.monotonic() + HEALTHY_WITHIN
            while (job := httpx.get(f"{api}/api/jobs/{job_id}", headers=auth, timeout=10).json())["status"] != "completed":
                assert time.monotonic() < deadline, (job, stack.log("worker"))
                assert processes["worker"].poll() is None, stack.log("worker")
                time.sleep(0.1)
            assert job["worker_id"], job
        if postgres_url is None:
            # The named volume holds the shared SQLite file.
            assert (stack.volumes["jobs-data"] / "jobs.db").exists()


@pytest.mark.slow
def test_the_api_refuses_to_start_with_the_example_env_file_unfilled(tmp_path: Path, local_tools: None) -> None:
    env_file = make_env_file(tmp_path, with_key=False)
    stack = LocalStack(load_stack(COMPOSE_FILES[0]), tmp_path, env_file, None)
    proc = stack.start("api")
    try:
        proc.wait(timeout=60)
    finally:
        stop_process(proc)
    assert proc.returncode == 2
    log = stack.log("api")
    assert "refusing to listen on 0.0.0.0" in log and "without authentication" in log, log
