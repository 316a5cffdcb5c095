"""Periodic jobs: when schedules tick (cron in a time zone, across DST), exactly one job per tick
however many scheduler processes run (real ``jobqueue worker`` processes, one of them killed
and restarted around a tick), the missed-ticks policies, the HTTP API and the CLI table. On
every backend."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from jobqueue.client import JobQueueClient
from jobqueue.errors import ValidationFailed
from jobqueue.keys import create_key
from jobqueue.models import KeyScope, MissedTicks, ScheduleSpec
from jobqueue.scheduler import Scheduler, next_tick
from jobqueue.service import JobQueueService
from jobqueue.worker import Registry

from .conftest import assert_error, headless_chromium, subprocess_env
from .helpers import run_sql, wait_until

PARIS = ZoneInfo("Europe/Paris")


def at(*fields: int, zone: ZoneInfo = PARIS) -> float:
    return datetime(*fields, tzinfo=zone).timestamp()  # type: ignore[misc]


def local(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, PARIS)


# -- when a schedule ticks ---------------------------------------------------------------------------


def test_cron_ticks_in_its_time_zone_across_both_dst_changes() -> None:
    nightly = ScheduleSpec(job_type="report", cron="30 2 * * *", timezone="Europe/Paris")
    # 29 March 2026: Paris skips 02:00-03:00; the 02:30 run happens at the change, 03:00 CEST.
    spring = next_tick(nightly, at(2026, 3, 28, 12, 0))
    assert local(spring) == datetime(2026, 3, 29, 3, 0, tzinfo=PARIS)
    assert local(spring).utcoffset().total_seconds() == 7200  # type: ignore[union-attr]
    assert local(next_tick(nightly, spring)) == datetime(2026, 3, 30, 2, 30, tzinfo=PARIS)
    # 25 October 2026: 02:00-03:00 happens twice; the run happens once, then a day (25 h) later.
    autumn = next_tick(nightly, at(2026, 10, 24, 12, 0))
    following = next_tick(nightly, autumn)
    assert datetime.fromtimestamp(autumn, UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert following - autumn == 25 * 3600
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    morning = ScheduleSpec(job_type="report", cron="0 9 * * *", timezone="Europe/Paris")
    assert datetime.fromtimestamp(next_tick(morning, at(2026, 1, 10, 12, 0)), UTC).hour == 8
    assert datetime.fromtimestamp(next_tick(morning, at(2026, 7, 10, 12, 0)), UTC).hour == 7


def test_interval_ticks_are_multiples_of_the_interval_since_the_epoch() -> None:
    hourly = ScheduleSpec(job_type="t", every=3600)
    assert next_tick(hourly, at(2026, 5, 1, 10, 17, 3, zone=ZoneInfo("UTC"))) == at(2026, 5, 1, 11, 0, zone=ZoneInfo("UTC"))
    # Strictly after: a tick is never its own successor.
    assert next_tick(hourly, at(2026, 5, 1, 11, 0, zone=ZoneInfo("UTC"))) == at(2026, 5, 1, 12, 0, zone=ZoneInfo("UTC"))
    with_seconds = ScheduleSpec(job_type="t", cron="*/15 * * * * *")
    assert next_tick(with_seconds, 1_000_000_007.5) == 1_000_000_020  # 01:46:47.5 -> 01:47:00


# -- the API ------------------------------------------------------------------------------------------


async def test_invalid_definitions_are_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("s", {"job_type": "t", "cron": "61 * * * *"}, "cron"),
        ("s", {"job_type": "t", "cron": "* * *"}, "cron"),
        ("s", {"job_type": "t", "cron": "0 0 30 2 *"}, "cron"),
        ("s", {"job_type": "t"}, "cron"),
        ("s", {"job_type": "t", "cron": "* * * * *", "every": 60}, "cron"),
        ("s", {"job_type": "t", "every": 60, "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ("s", {"job_type": "t", "every": 60, "timezone": "localtime"}, "timezone"),
        ("s", {"job_type": "t", "every": 0.5}, "every"),
        ("s", {"job_type": "t", "every": 60, "missed": "sometimes"}, "missed"),
        ("s", {"job_type": "", "every": 60}, "job_type"),
        ("-bad-name", {"job_type": "t", "every": 60}, "name"),
        # The registry's request type of the job type (the example generation type's).
        ("s", {"job_type": "generation", "every": 60, "request_data": {"prompt": 5}}, "request_data.prompt"),
    ]
    for name, body, field in cases:
        assert_error(await client.put(f"/api/schedules/{name}", json=body), 422, field)
    assert (await client.get("/api/schedules")).json() == {"items": []}


async def test_schedule_crud_pause_resume_and_run(client: httpx.AsyncClient, service: JobQueueService) -> None:
    body = {"job_type": "report", "cron": "0 3 * * *", "timezone": "Europe/Paris", "request_data": {"kind": "daily"}}
    created = await client.put("/api/schedules/nightly", json=body)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["source"] == "api" and schedule["paused"] is False and schedule["last_run_at"] is None
    assert schedule["missed"] == "skip" and schedule["max_attempts"] == service.settings.default_max_attempts
    expected = next_tick(ScheduleSpec(job_type="report", cron="0 3 * * *", timezone="Europe/Paris"), time.time())
    assert datetime.fromisoformat(schedule["next_run_at"]).timestamp() == expected
    assert local(expected).hour == 3

    # A replacement with the same timing keeps the next tick; another timing moves it.
    replaced = await client.put("/api/schedules/nightly", json={**body, "priority": 5})
    assert replaced.status_code == 200 and replaced.json()["priority"] == 5
    assert replaced.json()["next_run_at"] == schedule["next_run_at"]
    assert replaced.json()["created_at"] == schedule["created_at"]
    # Minute 30: never the nightly tick, whatever the hour the test runs at.
    hourly = await client.put("/api/schedules/nightly", json={**body, "priority": 5, "cron": "30 * * * *"})
    assert hourly.status_code == 200
    assert hourly.json()["next_run_at"] != schedule["next_run_at"]

    listed = (await client.get("/api/schedules")).json()["items"]
    assert [s["name"] for s in listed] == ["nightly"] and listed[0]["cron"] == "30 * * * *"
    assert (await client.get("/api/schedules/nightly")).json()["priority"] == 5

    paused = await client.post("/api/schedules/nightly/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert (await service.store.due_schedules(time.time() + 10 * 86400, 10)) == []
    resumed = await client.post("/api/schedules/nightly/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert datetime.fromisoformat(resumed.json()["next_run_at"]).timestamp() > time.time()

    run = await client.post("/api/schedules/nightly/run")
    assert run.status_code == 201, run.text
    job = run.json()
    assert job["job_type"] == "report" and job["request_data"] == {"kind": "daily"} and job["priority"] == 5

    assert (await client.delete("/api/schedules/nightly")).status_code == 204
    for response in (
        await client.get("/api/schedules/nightly"),
        await client.delete("/api/schedules/nightly"),
        await client.post("/api/schedules/nightly/pause"),
        await client.post("/api/schedules/nightly/run"),
    ):
        assert_error(response, 404)
        assert response.json()["error"] == "schedule_not_found"
    # The job the schedule made stays.
    assert (await service.require_job(job["id"])).job_type == "report"


async def test_reading_needs_read_and_changing_needs_admin(
    service: JobQueueService, client: httpx.AsyncClient
) -> None:
    reader = (await create_key(service.store, "reader", [KeyScope.READ], None)).key
    admin = (await create_key(service.store, "admin", [KeyScope.ADMIN], None)).key
    as_reader = {"authorization": f"Bearer {reader}"}
    as_admin = {"authorization": f"Bearer {admin}"}
    body = {"job_type": "t", "every": 60}
    assert_error(await client.put("/api/schedules/s", json=body, headers=as_reader), 403)
    assert (await client.put("/api/schedules/s", json=body, headers=as_admin)).status_code == 201
    assert (await client.get("/api/schedules", headers=as_reader)).status_code == 200
    assert (await client.get("/api/schedules/s", headers=as_reader)).status_code == 200
    for action in ("pause", "resume", "run"):
        assert_error(await client.post(f"/api/schedules/s/{action}", headers=as_reader), 403)
    assert_error(await client.delete("/api/schedules/s", headers=as_reader), 403)
    assert_error(await client.get("/api/schedules"), 401)


async def test_schedules_declared_in_code_are_written_and_updated_at_start(service: JobQueueService) -> None:
    first = Registry()
    first.schedule("digest", "mail", cron="0 8 * * MON", timezone="Europe/Paris", request_data={"v": 1})
    await service.declare_schedules(first.schedules)
    written = await service.require_schedule("digest")
    assert written.source == "code" and written.request_data == {"v": 1}
    # A worker started with a changed definition: same timing keeps the next tick.
    changed = Registry()
    changed.schedule("digest", "mail", cron="0 8 * * MON", timezone="Europe/Paris", request_data={"v": 2})
    await service.declare_schedules(changed.schedules)
    updated = await service.require_schedule("digest")
    assert updated.request_data == {"v": 2} and updated.next_run_at == written.next_run_at
    retimed = Registry()
    retimed.schedule("digest", "mail", cron="0 8 * * MON", timezone="America/New_York", request_data={"v": 2})
    await service.declare_schedules(retimed.schedules)
    assert (await service.require_schedule("digest")).next_run_at != written.next_run_at
    with pytest.raises(ValidationFailed) as refused:
        Registry().schedule("digest", "mail", cron="0 8 * * FUNDAY")
    assert refused.value.field == "cron"


# -- the scheduler -------------------------------------------------------------------------------------


def move_next_run_back(database_url: str, name: str, seconds: float) -> None:
    """Pretend no scheduler ran for ``seconds``: the schedule's next tick lies that far back."""
    run_sql(
        database_url,
        {
            "sqlite": "UPDATE schedules SET next_run_at = next_run_at - ? WHERE name = ?",
            "postgresql": "UPDATE schedules SET next_run_at = next_run_at - make_interval(secs => %s) WHERE name = %s",
        },
        (seconds, name),
    )


async def test_missed_ticks_are_skipped_or_caught_up_once(service: JobQueueService, database_url: str) -> None:
    for name, missed in (("skipper", MissedTicks.SKIP), ("catcher", MissedTicks.CATCH_UP)):
        await service.put_schedule(name, ScheduleSpec(job_type=name, every=60, missed=missed))
        # Ten minutes without a scheduler: ten ticks missed (the next one is still ahead).
        move_next_run_back(database_url, name, 600)
    overdue = {s.name: s.next_run_at for s in await service.list_schedules()}
    scheduler = Scheduler(service)
    for _ in range(3):
        await scheduler.run_once()

    skipped, _ = await service.list_jobs(job_type="skipper")
    caught_up, _ = await service.list_jobs(job_type="catcher")
    assert skipped == []
    assert len(caught_up) == 1
    assert caught_up[0].idempotency_key == f"schedule:catcher:{overdue['catcher'].isoformat()}"
    for schedule in await service.list_schedules():
        assert schedule.next_run_at.timestamp() > time.time()
    by_name = {s.name: s for s in await service.list_schedules()}
    assert by_name["catcher"].last_job_id == caught_up[0].id and by_name["catcher"].last_run_at == overdue["catcher"]
    assert by_name["skipper"].last_run_at is None and by_name["skipper"].last_job_id is None


async def test_a_tick_makes_one_job_with_its_created_event(service: JobQueueService) -> None:
    await service.put_schedule("often", ScheduleSpec(job_type="often", every=1, request_data={"n": 1}))
    created = []
    with service.events.subscribe(lambda event: event.job_type == "often") as subscription:
        scheduler = Scheduler(service)
        await wait_until(lambda: tick_then_count(scheduler), "a tick's job")
        event = await subscription.get(timeout=10)
        created.append(event)
    jobs, _ = await service.list_jobs(job_type="often")
    assert created[0].kind.value == "created" and created[0].job_id in {j.id for j in jobs}
    assert all(j.request_data == {"n": 1} for j in jobs)
    assert (await service.require_schedule("often")).last_job_id in {j.id for j in jobs}


async def tick_then_count(scheduler: Scheduler) -> bool:
    await scheduler.run_once()
    return scheduler.fired > 0


# -- several scheduler processes -----------------------------------------------------------------------

TICK_LINE = re.compile(r"schedule every-second: tick (\S+) queued job (\S+)")


class SchedulerProcesses:
    """``jobqueue worker`` processes whose registry declares a one-second schedule."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"scheduler-{len(self.procs)}.log"
        command = [
            sys.executable, "-m", "jobqueue", "worker",
            "--registry", "tests.schedule_registry:registry", "--log-level", "info",
        ]  # fmt: skip
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, env=subprocess_env(DATABASE_URL=self.database_url), stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def fired(self) -> list[tuple[str, str]]:
        """(tick, job id) of every job the processes' schedulers logged making."""
        return [m.groups() for log in self.logs for m in TICK_LINE.finditer(log.read_text(errors="replace"))]

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def schedulers(tmp_path: Path, database_url: str) -> Iterator[SchedulerProcesses]:
    processes = SchedulerProcesses(tmp_path, database_url)
    yield processes
    processes.cleanup()


def tick_jobs(database_url: str) -> list[dict[str, Any]]:
    return run_sql(database_url, "SELECT id, idempotency_key, request_data FROM jobs WHERE job_type = 'tick'")


def tick_of(key: str) -> float:
    prefix = "schedule:every-second:"
    assert key.startswith(prefix), key
    return datetime.fromisoformat(key[len(prefix):]).timestamp()


def count_at_least(database_url: str, n: int) -> Callable[[], bool]:
    return lambda: len(tick_jobs(database_url)) >= n


@pytest.mark.slow
async def test_three_scheduler_processes_make_one_job_per_tick_across_a_kill_and_restart(
    schedulers: SchedulerProcesses, database_url: str, service: JobQueueService
) -> None:
    # (``service``: the database is migrated before the processes start and the test reads it.)
    for _ in range(3):
        schedulers.start()
    await wait_until(count_at_least(database_url, 2), "the first ticks' jobs")

    # SIGKILL one scheduler a few milliseconds before a tick, while all three are about to fire
    # it, and start it again at once: it comes back declaring the schedule again.
    next_second = int(time.time()) + 1
    await asyncio.sleep(max(0.0, next_second - 0.01 - time.time()))
    victim = schedulers.procs[0]
    victim.kill()
    victim.wait()
    before_restart = len(tick_jobs(database_url))
    schedulers.start()
    await wait_until(count_at_least(database_url, before_restart + 5), "five more ticks after the restart")
    schedulers.cleanup()

    jobs = tick_jobs(database_url)
    ticks = sorted(tick_of(job["idempotency_key"]) for job in jobs)
    # One job per tick, and no tick without its job: consecutive whole seconds.
    assert len(ticks) == len(set(ticks)) >= 7
    assert ticks == [ticks[0] + i for i in range(len(ticks))], ticks
    assert next_second in ticks  # the tick around the kill has its job too
    # Each job was made by exactly one scheduler (the compare-and-set): the processes' logs name
    # every job once, and no scheduler found a tick's job already made (which only the
    # idempotency key would have stopped).
    logged = [job_id for _, job_id in schedulers.fired()]
    assert len(logged) == len(set(logged)) and set(logged) <= {job["id"] for job in jobs}
    # (All but at most one: the killed process may have committed a job and died before its log line.)
    assert len({job["id"] for job in jobs} - set(logged)) <= 1
    assert not any("already had job" in log.read_text() for log in schedulers.logs)
    assert all(job["request_data"] in ({"from": "code"}, '{"from":"code"}') for job in jobs)
    [schedule] = await service.list_schedules()
    assert schedule.source == "code" and schedule.last_run_at is not None
    assert schedule.last_run_at.timestamp() == ticks[-1]


# -- the CLI -----------------------------------------------------------------------------------------


def jobqueue(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobqueue", *args],
        env=subprocess_env(JOBQUEUE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_adds_lists_pauses_and_removes_schedules(live_server: Callable[..., str]) -> None:
    url = live_server(RUN_WORKER="false")
    added = jobqueue(
        "schedule", "add", "reports", "report", "--cron", "*/5 * * * *", "--tz", "Europe/Paris",
        "--data", '{"kind": "summary"}', "--missed", "catch_up", url=url,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("schedule reports: next run ")
    assert jobqueue("schedule", "add", "cleanup", "purge", "--every", "3600", url=url).returncode == 0
    refused = jobqueue("schedule", "add", "broken", "t", "--cron", "every day", url=url)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("jobqueue: error: HTTP 422") and "cron" in refused.stderr

    assert jobqueue("schedule", "pause", "cleanup", url=url).stdout == "schedule cleanup paused\n"
    table = jobqueue("schedules", url=url)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "TYPE", "WHEN", "TZ", "NEXT", "RUN", "(UTC)", "LAST", "RUN", "(UTC)", "STATE"]
    assert len(rows) == 2
    assert rows[0].split()[:3] == ["cleanup", "purge", "every"] and rows[0].split()[-1] == "paused"
    assert rows[1].startswith("reports") and "*/5 * * * *" in rows[1] and "Europe/Paris" in rows[1]
    stored = httpx.get(f"{url}/api/schedules/reports").json()
    assert stored["request_data"] == {"kind": "summary"} and stored["missed"] == "catch_up"
    # The table shows the next run as the API has it (UTC).
    next_run = datetime.fromisoformat(stored["next_run_at"]).strftime("%Y-%m-%d %H:%M:%S")
    assert next_run in rows[1]

    resumed = jobqueue("schedule", "resume", "cleanup", url=url)
    assert resumed.returncode == 0 and resumed.stdout.startswith("schedule cleanup resumed: next run ")
    job_id = jobqueue("schedule", "run", "reports", url=url).stdout.strip()
    assert httpx.get(f"{url}/api/jobs/{job_id}").json()["request_data"] == {"kind": "summary"}

    async def through_the_python_client() -> None:
        async with JobQueueClient(url) as api:
            changed = await api.put_schedule("cleanup", "purge", every=60, missed="catch_up")
            assert changed.every == 60 and changed.missed is MissedTicks.CATCH_UP and changed.source == "api"
            assert (await api.schedule("cleanup")).next_run_at == changed.next_run_at
            assert [s.name for s in await api.schedules()] == ["cleanup", "reports"]

    asyncio.run(through_the_python_client())
    assert jobqueue("schedule", "remove", "cleanup", url=url).returncode == 0
    listed = jobqueue("schedules", "--json", url=url)
    assert [s["name"] for s in json.loads(listed.stdout)] == ["reports"]
    missing = jobqueue("schedule", "remove", "cleanup", url=url)
    assert missing.returncode == 2 and "schedule_not_found" in missing.stderr


# -- the dashboard -----------------------------------------------------------------------------------


@pytest.mark.browser
def test_dashboard_schedules_panel_shows_when_and_next_run(live_server: Callable[..., str], tmp_path: Path) -> None:
    base = live_server(RUN_WORKER="false")
    put = httpx.put(
        f"{base}/api/schedules/nightly",
        json={"job_type": "report", "cron": "30 2 * * *", "timezone": "Europe/Paris"},
        timeout=10,
    )
    assert put.status_code == 201, put.text
    with headless_chromium(tmp_path / "profile", logging={"browser": "ALL"}) as driver:
        driver.get(f"{base}/dashboard")

        def rows() -> list[list[str]]:
            return list(
                driver.execute_script(
                    "return [...document.querySelectorAll('#schedules tbody tr')]"
                    ".map(tr => [...tr.cells].map(td => td.textContent))"
                )
            )

        deadline = time.monotonic() + 30
        while not rows() and time.monotonic() < deadline:
            time.sleep(0.05)
        [(name, job_type, when, next_run, last_run)] = rows()
        assert (name, job_type, when, last_run) == ("nightly", "report", "30 2 * * * (Europe/Paris)", "—")
        # Shown in the browser's zone; the exact instant is in the cell's title.
        assert next_run != "paused" and next_run
        title = driver.execute_script("return document.querySelector('#schedules tbody td:nth-child(4)').title")
        assert title == put.json()["next_run_at"]
        assert driver.execute_script("return document.querySelector('#schedules-empty').hidden") is True

        # A pause made elsewhere shows at the panel's next reload.
        assert httpx.post(f"{base}/api/schedules/nightly/pause", timeout=10).status_code == 200
        deadline = time.monotonic() + 30
        while rows()[0][3] != "paused":
            assert time.monotonic() < deadline, rows()
            time.sleep(0.1)
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
