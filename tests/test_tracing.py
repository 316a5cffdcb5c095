"""OpenTelemetry (the ``otel`` extra): a job keeps the trace context it was enqueued in, each
attempt runs in a span linked to it, a retry is another linked span, and a job enqueued by a
handler links to that handler's attempt. Without the extra nothing is captured or started.

The spans are collected by the real SDK (an in-memory exporter). OpenTelemetry allows one global
tracer provider per process, so this module installs one whose sampler is switched on only while
its tests run: the rest of the suite gets non-recording spans.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

from jobqueue import tracing
from jobqueue.models import JobStatus
from jobqueue.service import JobQueueService
from jobqueue.worker import JobContext, Registry
from tests.conftest import subprocess_env
from tests.test_attempts import run_until_finished

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


class Switch(Sampler):
    """Records spans only while ``on``."""

    on = False

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, kind: Any = None, attributes: Any = None, *rest: Any
    ) -> SamplingResult:
        # The span's attributes are those the sampler passes on.
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "Switch"


_EXPORTER = InMemorySpanExporter()
_SAMPLER = Switch()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(sampler=_SAMPLER)
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    _SAMPLER.on = True
    try:
        yield _EXPORTER
    finally:
        _SAMPLER.on = False
        _EXPORTER.clear()


def runs(exporter: InMemorySpanExporter, job_type: str) -> list[ReadableSpan]:
    found = [s for s in exporter.get_finished_spans() if s.name == f"jobqueue.run {job_type}"]
    return sorted(found, key=lambda s: s.attributes["jobqueue.job.attempt"])  # type: ignore[index]


def flaky_registry() -> Registry:
    registry = Registry()

    @registry.handler("traced")
    async def traced(ctx: JobContext) -> str:
        if ctx.job.attempts == 1:
            raise RuntimeError("first attempt breaks")
        return "ok"

    return registry


async def test_each_attempt_runs_in_a_span_linked_to_the_enqueue_request(
    client: httpx.AsyncClient, service: JobQueueService, spans: InMemorySpanExporter
) -> None:
    created = await client.post(
        "/api/jobs",
        json={"job_type": "traced", "max_attempts": 2},
        headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1"},
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["trace_context"] == {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    assert (await client.get(f"/api/jobs/{job['id']}")).json()["trace_context"] == job["trace_context"]

    await run_until_finished(service, flaky_registry(), job["id"])
    assert (await service.require_job(job["id"])).status is JobStatus.COMPLETED

    first, second = runs(spans, "traced")
    for attempt, span in ((1, first), (2, second)):
        assert span.kind is SpanKind.CONSUMER and span.parent is None  # a root, not a child of the request
        assert span.attributes["messaging.message.id"] == job["id"]  # type: ignore[index]
        assert span.attributes["jobqueue.job.attempt"] == attempt  # type: ignore[index]
        [link] = span.links
        assert format(link.context.trace_id, "032x") == TRACE_ID
        assert format(link.context.span_id, "016x") == SPAN_ID
    # The retry is its own span, linked to the same enqueue; the failed attempt says why.
    assert first.context.trace_id != second.context.trace_id
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["jobqueue.job.outcome"] == "failed (will retry)"  # type: ignore[index]
    assert [e.attributes["exception.message"] for e in first.events] == ["first attempt breaks"]  # type: ignore[index]
    assert second.status.status_code is StatusCode.UNSET
    assert second.attributes["jobqueue.job.outcome"] == "completed"  # type: ignore[index]


async def test_a_job_enqueued_by_a_handler_links_to_that_attempt(
    service: JobQueueService, spans: InMemorySpanExporter
) -> None:
    registry = Registry()
    children: list[str] = []

    @registry.handler("parent")
    async def parent(ctx: JobContext) -> None:
        children.append(await ctx.service.enqueue_job("child"))

    @registry.handler("child")
    async def child(ctx: JobContext) -> None:
        return None

    parent_id = await service.enqueue_job("parent")
    assert (await service.require_job(parent_id)).trace_context is None  # no span around this call
    await run_until_finished(service, registry, parent_id)
    await run_until_finished(service, registry, children[0])

    [parent_span] = runs(spans, "parent")
    [child_span] = runs(spans, "child")
    carrier = (await service.require_job(children[0])).trace_context
    assert carrier is not None
    span_context = parent_span.context
    # (the flags after the span id vary with the SDK's version: sampled, maybe random)
    assert carrier["traceparent"].startswith(f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-")
    assert [link.context.span_id for link in child_span.links] == [span_context.span_id]


async def test_a_malformed_traceparent_is_not_stored(client: httpx.AsyncClient, spans: InMemorySpanExporter) -> None:
    for header in ("garbage", f"00-{'0' * 32}-{SPAN_ID}-01", "x" * 600):
        created = await client.post("/api/jobs", json={"job_type": "traced"}, headers={"traceparent": header})
        assert created.status_code == 201 and created.json()["trace_context"] is None, header
    # A batch takes the request's context for every job.
    batch = await client.post(
        "/api/jobs/batch", json={"jobs": [{"job_type": "traced"}] * 2}, headers={"traceparent": TRACEPARENT}
    )
    assert [item["job"]["trace_context"] for item in batch.json()["items"]] == [{"traceparent": TRACEPARENT}] * 2


def test_without_the_extra_nothing_is_captured_or_started(database_url: str) -> None:
    # A process where importing opentelemetry fails, as when the extra is not installed.
    script = f"""
import asyncio, sys
sys.modules["opentelemetry"] = None
from jobqueue import tracing
from jobqueue.models import JobStatus
from jobqueue.service import JobQueueService
from jobqueue.worker import Registry, WorkerPool
from tests.conftest import make_settings

assert tracing.AVAILABLE is False
assert tracing.from_headers({{"traceparent": "{TRACEPARENT}"}}) is None
registry = Registry()

@registry.handler("plain")
async def plain(ctx):
    return 1

async def main():
    async with JobQueueService.open(make_settings({database_url!r})) as service:
        job_id = await service.enqueue_job("plain")
        await WorkerPool(service, registry, concurrency=2).run(burst=True)
        job = await service.require_job(job_id)
        assert job.status is JobStatus.COMPLETED and job.trace_context is None, job
        print("ok")

asyncio.run(main())
"""
    result = subprocess.run(
        [sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr
    assert tracing.AVAILABLE  # and in this process, with the extra, it is on
