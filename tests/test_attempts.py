"""The attempt history: every attempt that ended badly keeps its worker, times, error and
traceback, whichever path ended it (a handler's exception, a lapsed lease, a cancel); readable
through the service, the API, the Python client and ``jobqueue get``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jobqueue.client import JobQueueClient
from jobqueue.models import MAX_TRACEBACK_CHARS, JobStatus
from jobqueue.service import JobQueueService
from jobqueue.worker import JobContext, Registry
from tests.conftest import drain, make_settings, running_server, subprocess_env

DEADLINE = 30.0


@pytest.fixture
async def fast_retry(database_url: str) -> AsyncIterator[JobQueueService]:
    settings = make_settings(database_url, retry_base_delay=0.01, lease_seconds=0.3)
    async with JobQueueService.open(settings) as service:
        yield service


def flaky_handler(failures: int) -> Registry:
    registry = Registry()

    @registry.handler("flaky")
    async def flaky(ctx: JobContext) -> str:
        if ctx.job.attempts <= failures:
            deep_inside(ctx.job.attempts)
        return "finally"

    return registry


def deep_inside(attempt: int) -> None:
    raise ValueError(f"attempt {attempt} went wrong")


async def run_until_finished(service: JobQueueService, registry: Registry, job_id: str) -> None:
    async def finished() -> None:
        while (await service.require_job(job_id)).status not in (JobStatus.COMPLETED, JobStatus.FAILED):
            await drain(service, registry)
            await asyncio.sleep(0.02)  # a retry waits out its (short) backoff

    await asyncio.wait_for(finished(), DEADLINE)


async def test_failed_attempts_keep_their_tracebacks_and_the_completed_one_follows(
    fast_retry: JobQueueService,
) -> None:
    job_id = await fast_retry.enqueue_job("flaky", max_attempts=3)
    await run_until_finished(fast_retry, flaky_handler(failures=2), job_id)

    history = (await fast_retry.attempts(job_id)).attempts
    assert [(a.attempt, a.outcome, a.error) for a in history] == [
        (1, "failed", "ValueError: attempt 1 went wrong"),
        (2, "failed", "ValueError: attempt 2 went wrong"),
        (3, "completed", None),
    ]
    for attempt in history[:2]:
        assert attempt.traceback is not None
        assert attempt.traceback.startswith("Traceback (most recent call last):")
        assert "in deep_inside" in attempt.traceback and attempt.traceback.rstrip().endswith(
            f"ValueError: attempt {attempt.attempt} went wrong"
        )
    assert history[2].traceback is None
    for attempt in history:
        assert attempt.worker_id and attempt.started_at is not None and attempt.ended_at is not None
        assert attempt.started_at <= attempt.ended_at
    assert history[0].ended_at <= history[1].started_at <= history[1].ended_at <= history[2].started_at  # type: ignore[operator]


async def test_a_retried_job_numbers_again_and_keeps_the_earlier_history(fast_retry: JobQueueService) -> None:
    job_id = await fast_retry.enqueue_job("once", max_attempts=1)
    registry = Registry()
    runs: list[int] = []

    @registry.handler("once")
    async def fails_the_first_time(ctx: JobContext) -> None:
        runs.append(ctx.job.attempts)
        if len(runs) == 1:
            raise RuntimeError("first run")

    await run_until_finished(fast_retry, registry, job_id)
    assert (await fast_retry.require_job(job_id)).status is JobStatus.FAILED

    await fast_retry.retry_job(job_id)  # attempts count from 0 again
    await run_until_finished(fast_retry, registry, job_id)
    history = (await fast_retry.attempts(job_id)).attempts
    assert [(a.attempt, a.outcome) for a in history] == [(1, "failed"), (1, "completed")]
    assert runs == [1, 1]


async def test_a_lapsed_lease_and_a_cancel_end_attempts_without_a_traceback(fast_retry: JobQueueService) -> None:
    lapsed = await fast_retry.enqueue_job("stuck", max_attempts=2)
    claimed = await fast_retry.get_next_job(worker_id="frozen-worker", job_types=["stuck"])
    assert claimed is not None and claimed.job.id == lapsed

    async def reaped() -> None:
        while (await fast_retry.require_job(lapsed)).status is not JobStatus.QUEUED:
            await fast_retry.reap_expired()
            await asyncio.sleep(0.05)

    await asyncio.wait_for(reaped(), DEADLINE)
    [ended] = (await fast_retry.attempts(lapsed)).attempts
    assert (ended.attempt, ended.outcome, ended.worker_id, ended.traceback) == (1, "failed", "frozen-worker", None)
    assert ended.error == "lease expired: worker frozen-worker stopped heartbeating"

    # A worker fails its next attempt with a traceback; then the job is cancelled while held.
    again = await fast_retry.get_next_job(worker_id="w2", job_types=["stuck"])
    assert again is not None
    await fast_retry.fail_job(lapsed, again.claim_token, "boom", attempts=2, traceback="Traceback: boom\n")
    history = (await fast_retry.attempts(lapsed)).attempts
    assert [(a.attempt, a.outcome, a.traceback) for a in history] == [
        (1, "failed", None),
        (2, "failed", "Traceback: boom\n"),
    ]

    cancelled = await fast_retry.enqueue_job("stuck")
    held = await fast_retry.get_next_job(worker_id="w3", job_types=["stuck"])
    assert held is not None and held.job.id == cancelled
    await fast_retry.cancel_job(cancelled)
    await fast_retry.acknowledge_cancel(cancelled, held.claim_token)
    [ended] = (await fast_retry.attempts(cancelled)).attempts
    assert (ended.outcome, ended.worker_id, ended.traceback) == ("cancelled", "w3", None)


async def test_a_handed_back_attempt_is_not_in_the_history(fast_retry: JobQueueService) -> None:
    job_id = await fast_retry.enqueue_job("handed")
    held = await fast_retry.get_next_job(worker_id="w", job_types=["handed"])
    assert held is not None
    await fast_retry.release_job(job_id, held.claim_token)
    assert (await fast_retry.attempts(job_id)).attempts == []
    held = await fast_retry.get_next_job(worker_id="w", job_types=["handed"])
    assert held is not None
    [running] = (await fast_retry.attempts(job_id)).attempts
    assert (running.attempt, running.outcome, running.ended_at) == (1, "running", None)


def test_remote_workers_send_tracebacks_and_clients_read_them(tmp_path: Path, database_url: str) -> None:
    with running_server(tmp_path, database_url, RUN_WORKER="false", RETRY_BASE_DELAY="0.01") as url:
        job = httpx.post(f"{url}/api/jobs", json={"job_type": "remote", "max_attempts": 2}).json()
        long_trace = "Traceback (most recent call last):\n" + "  frame\n" * 5000 + "KeyError: 'x'\n"
        for attempt, trace in ((1, long_trace), (2, None)):
            # wait: long-polls past the retry's backoff for the second attempt.
            claim = {"worker_id": "far", "job_types": ["remote"], "wait": 10}
            claimed = httpx.post(f"{url}/api/workers/claim", json=claim, timeout=30)
            token = claimed.json()["jobs"][0]["claim_token"]
            body = {"claim_token": token, "error": f"KeyError: 'x' ({attempt})", "traceback": trace}
            if trace is None:
                del body["traceback"]
            failed = httpx.post(f"{url}/api/jobs/{job['id']}/fail", json=body)
            assert failed.status_code == 200, failed.text
            if attempt == 1:
                assert httpx.get(f"{url}/api/jobs/{job['id']}").json()["status"] == "queued"

        history = httpx.get(f"{url}/api/jobs/{job['id']}/attempts").json()
        assert history["job_id"] == job["id"]
        first, second = history["attempts"]
        assert len(first["traceback"]) == MAX_TRACEBACK_CHARS
        assert first["traceback"].startswith("Traceback (most recent call last):\n  ... ")
        assert first["traceback"].endswith("  frame\nKeyError: 'x'\n")
        assert second["traceback"] is None and second["error"] == "KeyError: 'x' (2)"

        assert httpx.get(f"{url}/api/jobs/nope/attempts").status_code == 404
        refused = httpx.post(f"{url}/api/jobs/{job['id']}/fail", json={"claim_token": "t", "error": "e", "traceback": 5})
        assert refused.status_code == 422 and "traceback" in refused.json()["detail"]

        async def through_client() -> list[str]:
            async with JobQueueClient(url) as client:
                return [a.outcome for a in (await client.attempts(job["id"])).attempts]

        assert asyncio.run(through_client()) == ["failed", "failed"]

        shown = subprocess.run(
            [sys.executable, "-m", "jobqueue", "get", job["id"]],
            env=subprocess_env(JOBQUEUE_URL=url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        start = lines.index("attempts:")
        assert lines[start + 1].startswith("  #1 failed") and lines[start + 1].endswith(": KeyError: 'x' (1)")
        # Only the last attempt with a traceback shows it (here the first), under its line.
        assert lines[start + 2] == "      Traceback (most recent call last):"
        assert lines[-2] == "      KeyError: 'x'"
        assert lines[-1].startswith("  #2 failed") and lines[-1].endswith(": KeyError: 'x' (2)")
