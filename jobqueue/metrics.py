"""Prometheus metrics of one process: one ``JobMetrics`` per app or worker process.

Each ``JobMetrics`` has its own ``CollectorRegistry`` (never prometheus_client's global one), so
several apps in one process (tests, embedding) keep separate counts. ``attach(service)`` counts
the job events the service commits and reads the event hub's own counters at scrape time, so
neither the service nor the hub needs to know about Prometheus.

Counters count what *this process* did: a worker process counts the jobs it finished, the server
the jobs enqueued through it. Queue depth is read from the database at scrape time
(``refresh_queue``), so every process that reports it reports the same, true numbers.

Labels are bounded: job ids never become labels, and job types past ``MAX_JOB_TYPE_LABELS``
are counted under ``other`` (job types come from clients; an unbounded label set would let one
misbehaving client exhaust the metrics store).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from jobqueue.models import (
    ACTIVE_STATUSES,
    TERMINAL_EVENT_KINDS,
    EventKind,
    JobEvent,
    JobStats,
    JobStatus,
)

if TYPE_CHECKING:
    from jobqueue.service import JobQueueService
    from jobqueue.worker import WorkerPool

__all__ = ["CONTENT_TYPE_LATEST", "JobMetrics", "MAX_JOB_TYPE_LABELS"]

#: Distinct ``job_type`` label values kept before the rest are counted as ``other``.
MAX_JOB_TYPE_LABELS = 100
OTHER_JOB_TYPE = "other"

#: Unfinished jobs whose creation and start times are remembered for the histograms.
MAX_TRACKED_JOBS = 100_000

#: Seconds; waits span from instant claims to hours-long backlogs.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, float("inf"))
#: Seconds; from quick tasks to long generations.
RUN_BUCKETS = (0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, float("inf"))


class JobMetrics:
    """The metrics of one process, with their own registry (``self.registry``)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, queue_depth: bool = True) -> None:
        """``queue_depth=False`` leaves out the queue gauges (a worker process has no scrape
        hook to refresh them from the database; the server reports them)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._job_types: set[str] = set()
        #: Labelled children by (metric, *labels): ``labels()`` validates and locks on every
        #: call, a visible share of an enqueue's time in the server. Bounded like the labels.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._created_at: OrderedDict[str, datetime] = OrderedDict()
        self._started_at: OrderedDict[str, datetime] = OrderedDict()

        self.jobs_enqueued = Counter(
            "jobqueue_jobs_enqueued", "Jobs enqueued (idempotent replays not counted).", ["job_type"], registry=r
        )
        self.jobs_finished = Counter(
            "jobqueue_jobs_finished",
            "Jobs that reached a terminal status, by that status.",
            ["job_type", "status"],
            registry=r,
        )
        self.attempts_failed = Counter(
            "jobqueue_attempts_failed",
            "Failed attempts, including those that will be retried.",
            ["job_type"],
            registry=r,
        )
        self.job_wait_seconds = Histogram(
            "jobqueue_job_wait_seconds",
            "Seconds from enqueue to the first start of a job.",
            ["job_type"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.job_run_seconds = Histogram(
            "jobqueue_job_run_seconds",
            "Seconds from the first start of a job to its terminal status.",
            ["job_type", "status"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        queue = r if queue_depth else None
        self.queue_jobs = Gauge(
            "jobqueue_queue_jobs", "Jobs in the database by status (read at scrape time).", ["status"], registry=queue
        )
        self.queue_ready = Gauge("jobqueue_queue_ready", "Waiting jobs that are due now.", registry=queue)
        self.queue_scheduled = Gauge(
            "jobqueue_queue_scheduled", "Waiting jobs scheduled for later (delayed or backing off).", registry=queue
        )
        self.queue_oldest_waiting_seconds = Gauge(
            "jobqueue_queue_oldest_waiting_seconds", "Age of the oldest waiting job; 0 when none waits.", registry=queue
        )
        self.worker_slots = Gauge("jobqueue_worker_slots", "Jobs the worker pools of this process may run at once.", registry=r)
        self.worker_busy = Gauge("jobqueue_worker_busy", "Jobs the worker pools of this process are running.", registry=r)
        self._pools: list[WorkerPool] = []
        self.worker_busy.set_function(lambda: sum(len(pool.running) for pool in self._pools))
        self.worker_slots.set_function(lambda: sum(pool.concurrency for pool in self._pools))

    # -- recording ---------------------------------------------------------------------------------

    def job_type_label(self, job_type: str) -> str:
        if job_type in self._job_types:
            return job_type
        if len(self._job_types) >= MAX_JOB_TYPE_LABELS:
            return OTHER_JOB_TYPE
        self._job_types.add(job_type)
        return job_type

    def attach(self, service: JobQueueService) -> None:
        """Count the job events ``service`` commits, and read its event hub's state at scrape.

        Only events committed by this process are counted (the hub's commit listener, called
        after each commit), so summing a counter over processes counts each job once.
        Every process's hub also sees other processes' events: those only teach it when a job
        was created and first started, for the wait and run histograms.
        """

        def count(events: list[JobEvent]) -> None:
            for event in events:
                self._count_local(event)

        service.events.add_commit_listener(count)
        service.events.add_callback(self._remember)
        self.registry.register(_EventHubCollector(service.events))

    def _remember(self, event: JobEvent) -> None:
        """Keep when each unfinished job was created and first started (bounded)."""
        if event.kind is EventKind.CREATED:
            _bounded_put(self._created_at, event.job_id, event.at)
        elif event.status in ACTIVE_STATUSES and event.job_id not in self._started_at:
            _bounded_put(self._started_at, event.job_id, event.at)
        elif event.kind in TERMINAL_EVENT_KINDS:
            self._created_at.pop(event.job_id, None)
            self._started_at.pop(event.job_id, None)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _count_local(self, event: JobEvent) -> None:
        job_type = self.job_type_label(event.job_type)
        if event.kind is EventKind.CREATED:
            self._child(self.jobs_enqueued, job_type).inc()
        elif event.status in ACTIVE_STATUSES and event.job_id not in self._started_at:
            created = self._created_at.get(event.job_id)
            if created is not None:
                wait = (event.at - created).total_seconds()
                self._child(self.job_wait_seconds, job_type).observe(max(wait, 0.0))
        elif event.kind is EventKind.REQUEUED and isinstance(event.data, dict) and event.data.get("error"):
            self._child(self.attempts_failed, job_type).inc()
        elif event.kind in TERMINAL_EVENT_KINDS:
            status = event.status.value
            self._child(self.jobs_finished, job_type, status).inc()
            if status == JobStatus.FAILED.value:
                self._child(self.attempts_failed, job_type).inc()
            started = self._started_at.get(event.job_id)
            if started is not None:
                run = (event.at - started).total_seconds()
                self._child(self.job_run_seconds, job_type, status).observe(max(run, 0.0))

    def track_pool(self, pool: WorkerPool) -> None:
        """Report a worker pool's running jobs and concurrency, read at scrape time."""
        self._pools.append(pool)

    def refresh_queue(self, stats: JobStats, now: datetime | None = None) -> None:
        for status in JobStatus:
            self.queue_jobs.labels(status.value).set(stats.by_status.get(status.value, 0))
        self.queue_ready.set(stats.ready)
        self.queue_scheduled.set(stats.scheduled)
        oldest = stats.oldest_waiting_at
        now = now or datetime.now(UTC)
        self.queue_oldest_waiting_seconds.set(0 if oldest is None else max((now - oldest).total_seconds(), 0.0))

    def render(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)


def _bounded_put(store: OrderedDict[str, datetime], key: str, value: datetime) -> None:
    store[key] = value
    if len(store) > MAX_TRACKED_JOBS:
        store.popitem(last=False)  # a job whose end this process never saw


class _EventHubCollector(Collector):
    """The event hub's own counters and state, read at scrape time (the hub keeps them)."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        hub = self.hub
        yield GaugeMetricFamily(
            "jobqueue_event_listeners",
            "Open event subscriptions of this process (SSE streams and waiters).",
            value=hub.listener_count,
        )
        yield CounterMetricFamily(
            "jobqueue_events_published", "Job events this process published on Redis.", value=hub.published
        )
        dropped = CounterMetricFamily(
            "jobqueue_events_dropped",
            "Job events not delivered live; their listeners catch up from the database.",
            labels=["reason"],
        )
        dropped.add_metric(["redis_publish"], hub.dropped)
        dropped.add_metric(["listener_cut_off"], hub.cut_off)
        yield dropped
        state = hub.redis_state
        yield GaugeMetricFamily(
            "jobqueue_redis_configured", "1 when REDIS_URL is set.", value=0 if state == "not configured" else 1
        )
        yield GaugeMetricFamily(
            "jobqueue_redis_up", "1 while the Redis event channel is connected.", value=1 if state == "ok" else 0
        )
