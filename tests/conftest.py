"""Shared fixtures: every backend (a real SQLite file under tmp_path, a real PostgreSQL database
created and dropped per test), the app with its lifespan entered, a real uvicorn for streaming
and process-boundary tests, and Redis. In CI, Redis and PostgreSQL are required."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from jobqueue.api.app import create_app
from jobqueue.api.hosts import LOOPBACK_HOSTS
from jobqueue.service import JobQueueService
from jobqueue.settings import Settings, load_settings
from jobqueue.worker import Registry, WorkerPool

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: Every storage backend; the conformance suite runs each backend-neutral test on all of them.
BACKENDS = ("sqlite", "postgresql")
#: The PostgreSQL server the tests create their databases on (its maintenance database; tests
#: never touch any database but the ones they create).
POSTGRES_ADMIN_URL = os.environ.get("POSTGRES_TEST_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
#: Prefix of the databases the tests create (and drop).
TEST_DATABASE_PREFIX = "jobqueue_test_"


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings on the database at ``database_url`` (a test's ``database_url``, on every backend)."""
    settings = load_settings({"DATABASE_URL": database_url, "RUN_WORKER": "false"})
    fields = {f: getattr(settings, f) for f in settings.__struct_fields__}
    fields["allowed_hosts"] = (*LOOPBACK_HOSTS, "test")  # the ASGI clients' http://test
    fields.update(overrides)
    return Settings(**fields)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A reachable PostgreSQL server. In CI its absence fails the test; elsewhere it skips."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2).close()
    except psycopg.Error as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is required in CI and is not reachable: {exc}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL}: {exc}")
    return POSTGRES_ADMIN_URL


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards. Yields its URL."""
    import psycopg
    from psycopg import sql

    name = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(admin_url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            # FORCE: a server process the test killed may still hold a connection.
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


#: Pins a test to SQLite, for what only SQLite has (its file, WAL, pragmas, vacuum): it overrides
#: the parameters of the ``backend`` fixture, so the test keeps ``database_url`` and ``settings``.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def _new_database(backend: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if backend == "sqlite":
        folder.mkdir(exist_ok=True)
        yield f"sqlite:///{folder / 'jobs.db'}"
        return
    with postgres_database(request.getfixturevalue("postgres_admin_url")) as url:
        yield url


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's database on each backend: a SQLite file, or a PostgreSQL database of its own."""
    with _new_database(backend, tmp_path, request) as url:
        yield url


@pytest.fixture
def second_database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """Another database of the test's backend, sharing nothing with ``database_url``."""
    with _new_database(backend, tmp_path / "second", request) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of each backend shared by the tests of one module (for a module-scoped
    server: its tests keep apart by using job types of their own)."""
    with _new_database(str(request.param), tmp_path_factory.mktemp("module-database"), request) as url:
        yield url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, lease_seconds=2.0, poll_interval=0.05, retry_base_delay=0.05)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[JobQueueService]:
    async with JobQueueService.open(settings) as svc:
        yield svc


async def drain(service: JobQueueService, registry: Registry, concurrency: int = 10) -> WorkerPool:
    """Run a burst-mode pool until the queue is empty (the arq ``burst=True`` pattern)."""
    pool = WorkerPool(service, registry, concurrency=concurrency, poll_interval=0.01)
    await pool.run(burst=True)
    return pool


@pytest.fixture
def app_client_factory() -> Callable[..., Any]:
    """Build an httpx client on ``create_app(settings)`` with the lifespan entered."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def factory(settings: Settings, registry: Registry | None = None) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings, registry=registry)
        async with app.router.lifespan_context(app) as state:

            async def asgi(scope: Any, receive: Any, send: Any) -> None:
                scope["state"] = dict(state)  # what uvicorn does with lifespan state
                await app(scope, receive, send)

            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client

    return factory


@pytest.fixture
async def client(settings: Settings, app_client_factory: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client_factory(settings) as c:
        yield c


# -- requests and their answers ----------------------------------------------------------------


async def create(client: httpx.AsyncClient, job_type: str = "thumbnail", **body: Any) -> dict[str, Any]:
    response = await client.post("/api/jobs", json={"job_type": job_type, **body})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_error(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """Every error is JSON of one shape; returns the body for further checks."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert set(body) <= {"error", "detail", "field"}
    if field is not None:
        assert body.get("field") == field, body
    return body  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM (the graceful path under test), then SIGKILL if it does not end in time."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running_server(directory: Path, database_url: str, **env: str) -> Iterator[str]:
    """``python -m jobqueue serve`` (a real uvicorn) on a free port of 127.0.0.1, with its log in
    ``directory`` and its database at ``database_url``; yields its base URL."""
    port = free_port()
    full_env = subprocess_env(
        DATABASE_URL=database_url,
        HOST="127.0.0.1",
        PORT=str(port),
        **env,
    )
    # The child keeps its own copy of the descriptor; ours is closed at once.
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
        stop_process(proc)


@pytest.fixture
def live_server(tmp_path: Path, database_url: str) -> Iterator[Callable[..., str]]:
    """Start servers (``running_server``) sharing the test's database; returns their base URL.

    One server per test; a module that only needs isolation per job can share one server by
    using ``running_server`` in a module-scoped fixture."""
    with ExitStack() as servers:
        yield lambda **env: servers.enter_context(running_server(tmp_path, database_url, **env))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis. In CI its absence fails the test; elsewhere the test is skipped."""
    import redis

    url = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis at {url} is required in CI and is not reachable: {exc}")
        pytest.skip(f"no Redis at {url}: {exc}")
    return url


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@contextmanager
def headless_chromium(profile: Path, *arguments: str, logging: dict[str, str]) -> Iterator[Any]:
    """Debian's chromium driven by selenium, headless and cut off from the internet's services.

    Outside CI the test is skipped when chromium or chromedriver is missing; in CI (``.ci/run``
    installs both) it fails instead, so the browser tests always run there.
    """
    if CHROMIUM is None or CHROMEDRIVER is None:
        reason = "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the browser tests")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",  # we run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *arguments,
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", logging)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()
