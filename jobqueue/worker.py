"""WorkerPool: claims jobs and runs their handlers, up to N at once, in one event loop.

Guarantees (see the README's "Guarantees" section):

* At-least-once: a claimed job is held under a lease the pool renews while the handler runs (every
  third of the lease; a progress write renews it too). If the process dies or freezes, the lease
  lapses and the reaper (in any process) puts the job back in the queue, or fails it once its
  attempts are used up.
* Fencing: every write about a held job carries its claim token. A pool that lost the claim gets
  ``LeaseLost`` for each write, and the pool cancels its handler: it never overwrites the job's
  next attempt.
* Graceful stop: ``stop()`` ends claiming, waits ``shutdown_grace`` seconds for running handlers,
  then cancels the rest and hands their jobs back without counting the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from jobqueue.errors import JobQueueError, LeaseLost, ValidationFailed
from jobqueue.jsonlimits import unstorable_result
from jobqueue.models import ACTIVE_STATUSES, ClaimedJob, Job, JobStatus, MissedTicks, ScheduleSpec
from jobqueue.scheduler import check_spec
from jobqueue.service import JobQueueService, check_schedule_name
from jobqueue.tracing import AttemptSpan

if TYPE_CHECKING:
    from jobqueue.client import JobQueueClient
    from jobqueue.tasks import RetryPolicy, Task

logger = logging.getLogger(__name__)

#: ``async def handler(ctx)``; a plain ``def handler(ctx)`` is accepted too and runs in a thread.
Handler = Callable[["JobContext"], Any]
T = TypeVar("T")

#: Seconds between progress writes of one job; reports in between are coalesced (the latest
#: wins), and the last one is always written before the job finishes.
PROGRESS_WRITE_INTERVAL = 0.1
#: Seconds between checks for cancel requests of running jobs (made in any process).
CANCEL_CHECK_INTERVAL = 0.5
#: Most seconds between two renewals of a pool's registration (``GET /api/workers``); a pool
#: with a short lease renews it as often as its leases.
REGISTRATION_INTERVAL = 5.0
#: A registration not renewed for this many intervals has lapsed: the pool is taken for gone.
REGISTRATION_LAPSE_INTERVALS = 3
#: Seconds between two deletions of lapsed registrations by the reaper (listings already skip
#: them; this only keeps the table small).
LAPSED_WORKERS_CLEANUP_INTERVAL = 30.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Registry:
    """Handlers by job type, and what ``request_data`` each accepts::

        registry = Registry()

        @registry.handler("resize", request_data=ResizeRequest)
        async def resize(ctx: JobContext) -> dict:
            ...

    ``request_data`` (optional) is a msgspec type; the API refuses with 422 a job of that type
    whose data does not convert to it, whichever route queues it, so a handler's limits hold
    before a worker spends a slot on the job.
    """

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.request_types: dict[str, Any] = {}
        #: Types whose handler is a plain ``def``: the pool calls it in a thread (see WorkerPool).
        self.threaded: set[str] = set()
        #: Which failures of a typed task are retried, and the base of its backoff.
        self.retry_policies: dict[str, RetryPolicy] = {}
        #: Where this registry's tasks enqueue (``connect``); inside a handler, the job's service.
        self.target: JobQueueClient | JobQueueService | None = None
        #: Schedules declared in code, by name: written when a worker (or server) starts.
        self.schedules: dict[str, ScheduleSpec] = {}

    def handler(self, job_type: str, *, request_data: Any = None) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.add(job_type, fn, request_data=request_data)
            return fn

        return register

    def add(self, job_type: str, fn: Handler, *, request_data: Any = None) -> None:
        if job_type in self.handlers:
            raise ValueError(f"a handler for job type {job_type!r} is already registered")
        is_async = _check_handler(job_type, fn)
        self.handlers[job_type] = fn
        if not is_async:
            self.threaded.add(job_type)
        if request_data is not None:
            self.request_types[job_type] = request_data

    def task(
        self,
        job_type: str,
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
        priority: int = 0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        retry_delay: float | None = None,
    ) -> Callable[[Callable[..., Awaitable[Any]]], Task[Any]]:
        """Register a typed task (``async def f(ctx, a: int, b: str = "x")``); see jobqueue.tasks."""
        from jobqueue.tasks import Task

        def register(fn: Callable[..., Awaitable[Any]]) -> Task[Any]:
            task: Task[Any] = Task(
                self,
                job_type,
                fn,
                max_attempts=max_attempts,
                timeout=timeout,
                priority=priority,
                retry_on=retry_on,
                retry_delay=retry_delay,
            )
            self.add(job_type, task.run, request_data=task.params)
            self.retry_policies[job_type] = task.retry
            return task

        return register

    def connect(self, target: JobQueueClient | JobQueueService) -> None:
        """Send the jobs this registry's tasks enqueue to ``target`` (a client or a service)."""
        self.target = target

    def schedule(
        self,
        name: str,
        job_type: str,
        *,
        cron: str | None = None,
        every: float | None = None,
        request_data: dict[str, Any] | None = None,
        timezone: str = "UTC",
        missed: MissedTicks | str = MissedTicks.SKIP,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Declare a periodic job: a ``cron`` expression (read in ``timezone``) or ``every`` N
        seconds; ``missed`` is ``skip`` or ``catch_up`` (see ``jobqueue.scheduler``)::

            registry.schedule("nightly-report", "report", cron="0 3 * * *", timezone="Europe/Paris")

        Written to the database (``source: code``) when a worker or server with this registry
        starts; a changed definition replaces the stored one, keeping its next tick when the
        timing is the same. A bad definition raises ``ValidationFailed`` here, at import.
        """
        if name in self.schedules:
            raise ValueError(f"a schedule named {name!r} is already declared")
        try:
            spec = msgspec.convert(
                {
                    "job_type": job_type,
                    "cron": cron,
                    "every": every,
                    "request_data": request_data,
                    "timezone": timezone,
                    "missed": MissedTicks(missed),
                    "priority": priority,
                    "max_attempts": max_attempts,
                    "timeout": timeout,
                },
                ScheduleSpec,
            )
        except msgspec.ValidationError as exc:
            raise ValidationFailed(f"schedule {name!r}: {exc}") from None
        check_schedule_name(name)
        check_spec(spec)
        self.schedules[name] = spec

    def merge(self, other: Registry) -> None:
        for job_type, fn in other.handlers.items():
            self.add(job_type, fn, request_data=other.request_types.get(job_type))
        self.retry_policies.update(other.retry_policies)
        for name, spec in other.schedules.items():
            if name in self.schedules:
                raise ValueError(f"a schedule named {name!r} is already declared")
            self.schedules[name] = spec


def _check_handler(job_type: str, fn: Any) -> bool:
    """Refuse at registration, in one line, a handler the pool could not call (found at import
    time, not when the first job of the type fails); returns whether it is a coroutine function.
    """
    name = getattr(fn, "__qualname__", repr(fn))
    if not callable(fn):
        raise TypeError(f"handler for job type {job_type!r} is not callable: {fn!r}")
    try:
        inspect.signature(fn).bind(object())
    except TypeError:
        raise TypeError(
            f"handler {name} for job type {job_type!r} must take exactly one argument, the job "
            "context: async def handler(ctx)"
        ) from None
    except ValueError:
        pass  # no signature to inspect (some builtins): called as it is
    target = fn if inspect.isroutine(fn) or inspect.isclass(fn) else getattr(fn, "__call__", fn)
    return inspect.iscoroutinefunction(inspect.unwrap(target))


class JobContext:
    """What a handler gets: the job, and fenced ways to report progress and running statuses."""

    def __init__(self, service: JobQueueService, claimed: ClaimedJob, worker_id: str) -> None:
        self.job: Job = claimed.job
        self.claim_token = claimed.claim_token
        self.worker_id = worker_id
        self._service = service
        self._last_write = 0.0
        self._pending: tuple[int, str | None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        #: The pool's loop, set when a plain ``def`` handler runs in a thread.
        self._loop: asyncio.AbstractEventLoop | None = None

    def from_thread(self, awaitable: Awaitable[T]) -> T:
        """Run one of this context's coroutines from a plain ``def`` handler's thread and
        return its result: ``ctx.from_thread(ctx.progress(50, "half way"))``."""
        if self._loop is None:
            raise RuntimeError("from_thread is for plain def handlers, which run in a thread")
        return asyncio.run_coroutine_threadsafe(awaitable, self._loop).result()  # type: ignore[arg-type]

    @property
    def service(self) -> JobQueueService:
        """The service the job came from (a handler may enqueue follow-up jobs through it)."""
        return self._service

    @property
    def request_data(self) -> Any:
        return self.job.request_data

    async def progress(self, progress: int, message: str | None = None) -> None:
        """Report progress (0-100) and an optional message.

        Writes at most every ``PROGRESS_WRITE_INTERVAL`` seconds; reports in between are merged
        and written shortly after. Raises ``LeaseLost`` when this attempt no longer holds the job.
        """
        now = time.monotonic()
        if now - self._last_write >= PROGRESS_WRITE_INTERVAL:
            self._pending = None
            await self._write(progress, message, None)
            return
        self._pending = (progress, message if message is not None else self._pending_message())
        if self._flush_task is None:
            delay = PROGRESS_WRITE_INTERVAL - (now - self._last_write)
            self._flush_task = asyncio.create_task(self._flush_later(delay))

    async def set_status(self, status: JobStatus | str, message: str | None = None, progress: int | None = None) -> None:
        """Move to a running status (say ``rendering``); always written at once."""
        status = JobStatus(status)
        if status not in ACTIVE_STATUSES:
            raise ValueError(f"a handler may only set a running status, not {status.value!r}")
        pending = self._pending
        self._pending = None
        if progress is None:
            progress = pending[0] if pending else self.job.progress
        if message is None and pending:
            message = pending[1]
        await self._write(progress, message, status)

    async def flush(self) -> None:
        """Write a coalesced report that is still waiting (done before the job finishes)."""
        if self._flush_task is not None:
            self._flush_task.cancel()
            self._flush_task = None
        if self._pending is not None:
            progress, message = self._pending
            self._pending = None
            await self._write(progress, message, None)

    def _pending_message(self) -> str | None:
        return self._pending[1] if self._pending else None

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._flush_task = None
        if self._pending is not None:
            progress, message = self._pending
            self._pending = None
            try:
                await self._write(progress, message, None)
            except LeaseLost:
                # The heartbeat sees the same loss and cancels the handler; nothing to add here.
                logger.info("progress of job %s dropped: the claim was lost", self.job.id)

    async def _write(self, progress: int, message: str | None, status: JobStatus | None) -> None:
        self._last_write = time.monotonic()
        self.job = await self._service.update_progress(
            self.job.id, progress, message, status=status, claim_token=self.claim_token
        )


class _Running:
    """Book-keeping of one running job."""

    __slots__ = ("claimed", "context", "task", "in_handler", "stop_reason", "renewed_at")

    def __init__(self, claimed: ClaimedJob, context: JobContext) -> None:
        self.claimed = claimed
        self.context = context
        #: The job's one task: it runs the handler, then reports the outcome.
        self.task: asyncio.Task[None] | None = None
        #: True while the task is inside the handler: only then may the pool cancel it.
        self.in_handler = False
        #: Why the pool cancelled the handler: "cancel", "lease_lost", "shutdown" or None.
        self.stop_reason: str | None = None
        self.renewed_at = time.monotonic()


class WorkerPool:
    def __init__(
        self,
        service: JobQueueService,
        registry: Registry,
        *,
        concurrency: int | None = None,
        job_types: Iterable[str] | None = None,
        worker_id: str | None = None,
        poll_interval: float | None = None,
        shutdown_grace: float | None = None,
    ) -> None:
        settings = service.settings
        self.service = service
        self.registry = registry
        self.concurrency = concurrency or settings.concurrency
        types = list(job_types) if job_types else list(registry.handlers)
        missing = [t for t in types if t not in registry.handlers]
        if missing:
            raise ValueError(f"no handler registered for job type(s): {', '.join(missing)}")
        self.job_types = types
        self.worker_id = worker_id or default_worker_id()
        self.poll_interval = poll_interval if poll_interval is not None else settings.poll_interval
        self.shutdown_grace = shutdown_grace if shutdown_grace is not None else settings.shutdown_grace
        self.lease = settings.lease_seconds
        self.registration_interval = min(self.lease / 3, REGISTRATION_INTERVAL)
        self.running: dict[str, _Running] = {}
        self.processed = 0
        #: Claim statements run so far: an idle pool adds about one per poll interval.
        self.claim_queries = 0
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._threads: ThreadPoolExecutor | None = None

    def stop(self) -> None:
        """Stop claiming; ``run`` then drains and returns."""
        if not self._stopping.is_set():
            logger.info(
                "worker %s stopping: %d running job(s) get %gs to finish",
                self.worker_id,
                len(self.running),
                self.shutdown_grace,
            )
        self._stopping.set()
        self._wakeup.set()
        self._slot_free.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self, *, burst: bool = False) -> None:
        """Claim and run jobs until ``stop()``; with ``burst`` return once the queue is empty."""
        if not self.job_types:
            raise ValueError("the pool has no job types to claim (no handlers registered)")
        self.service.add_wakeup(self._wakeup)
        await self._register()
        registration = asyncio.create_task(
            self._keep_registration(), name=f"jobqueue-registration-{self.worker_id}"
        )
        keeper = asyncio.create_task(self._keep_leases(), name=f"jobqueue-leases-{self.worker_id}")
        claimer = asyncio.create_task(self._claim_loop(burst), name=f"jobqueue-claim-{self.worker_id}")
        try:
            # Shielded so a cancelled run() still drains instead of abandoning claimed jobs.
            await asyncio.shield(claimer)
        finally:
            self.stop()
            # A claim in flight when run() was cancelled still starts its jobs; wait for it so
            # the drain below sees them instead of leaving them to run without heartbeats.
            await asyncio.wait([claimer])
            await self._drain()
            keeper.cancel()
            registration.cancel()
            await asyncio.gather(keeper, registration, return_exceptions=True)
            self.service.remove_wakeup(self._wakeup)
            if self._threads is not None:
                # Threads still running were already given up on (their jobs were handed
                # back or ended); do not wait for them.
                self._threads.shutdown(wait=False, cancel_futures=True)
            await self._unregister()

    async def _register(self) -> None:
        """Announce the pool (``GET /api/workers``), or renew its registration. A failure only
        costs visibility, never work: it is logged and the next round tries again."""
        try:
            await self.service.register_worker(
                self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                job_types=self.job_types,
                concurrency=self.concurrency,
                ttl=self.registration_interval * REGISTRATION_LAPSE_INTERVALS,
            )
        except Exception as exc:
            logger.warning("worker %s: registration failed (%s); retrying", self.worker_id, exc)

    async def _keep_registration(self) -> None:
        while True:
            await asyncio.sleep(self.registration_interval)
            await self._register()

    async def _unregister(self) -> None:
        try:
            await self.service.unregister_worker(self.worker_id)
        except Exception as exc:
            # The registration lapses on its own shortly.
            logger.warning("worker %s: could not unregister (%s)", self.worker_id, exc)

    async def _claim_loop(self, burst: bool) -> None:
        while not self.stopping:
            free = self.concurrency - len(self.running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wakeup.clear()
            self.claim_queries += 1
            try:
                claimed = await self.service.claim_jobs(
                    worker_id=self.worker_id, job_types=self.job_types, limit=free
                )
            except JobQueueError as exc:
                logger.error("claim failed (%s); retrying after %.1fs", exc, self.poll_interval)
                await self._sleep(self.poll_interval)
                continue
            for item in claimed:
                self._start(item)
            if len(claimed) == free:
                continue  # there may be more; fewer than asked for means the queue is empty
            if burst:
                if not self.running:
                    return
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            await self._sleep(self.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        """Wait for a wake-up (new work here, a free slot, stop) or the poll interval."""
        # asyncio.timeout: wait_for on Python 3.11 can swallow a cancel that meets a wake-up.
        with contextlib.suppress(TimeoutError):  # the interval passed without a wake-up
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()

    def _start(self, claimed: ClaimedJob) -> None:
        context = JobContext(self.service, claimed, self.worker_id)
        running = _Running(claimed, context)
        self.running[claimed.job.id] = running
        task = asyncio.create_task(self._execute(running), name=f"jobqueue-job-{claimed.job.id}")
        running.task = task
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._slot_free.set()
        self._wakeup.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("job runner crashed", exc_info=task.exception())

    async def _execute(self, running: _Running) -> None:
        job = running.claimed.job
        token = running.claimed.claim_token
        context = running.context
        handler = self.registry.handlers[job.job_type]
        service = self.service
        started = time.monotonic()
        span = AttemptSpan(job)
        try:
            outcome = "completed"
            result: Any = None
            error = ""
            trace: str | None = None
            retry, retry_delay = True, None
            # The handler runs in this task (not a task of its own: one task per job halves
            # the scheduling per job). The pool interrupts it by cancelling this task while
            # in_handler is set, after saying why in stop_reason.
            running.in_handler = True
            try:
                # asyncio.timeout(None) never expires; on expiry it cancels this task inside
                # the handler and raises TimeoutError here.
                async with asyncio.timeout(job.timeout) as deadline:
                    with span.current():
                        if job.job_type in self.registry.threaded:
                            result = await self._run_in_thread(handler, context)
                        else:
                            result = await handler(context)
            except asyncio.CancelledError:
                if running.stop_reason is None:
                    raise  # this task itself is being cancelled, not by the pool
                # The pool's cancel is handled here: later awaits of this task must not see it.
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                outcome = running.stop_reason
            except TimeoutError as exc:
                outcome = "failed"
                if deadline.expired():
                    error = f"timed out after {job.timeout:g}s"
                else:
                    error = "".join(traceback.format_exception_only(exc)).strip()
            except LeaseLost:
                outcome = "lease_lost"
            except Exception as exc:
                outcome = "failed"
                error = "".join(traceback.format_exception_only(exc)).strip()
                trace = "".join(traceback.format_exception(exc))
                if (policy := self.registry.retry_policies.get(job.job_type)) is not None:
                    retry, retry_delay = policy.retries(exc), policy.retry_delay
            finally:
                running.in_handler = False
            if outcome == "completed" and (problem := unstorable_result(result)) is not None:
                # Found here, the attempt fails at once with the reason; left to the store, the
                # write would raise outside any handler and the job would sit until its lease lapsed.
                outcome = "failed"
                error = f"the handler's return value cannot be stored as result_data: {problem}"
            if outcome == "lease_lost":
                span.end(outcome)
                logger.warning("job %s: claim lost; its result is discarded", job.id)
                return
            if outcome in ("completed", "failed"):
                await context.flush()
            if outcome == "completed":
                await service.complete_job(job.id, token, result)
            elif outcome == "failed":
                after = await service.fail_job(
                    job.id, token, error, attempts=job.attempts, traceback=trace, retry=retry, retry_delay=retry_delay
                )
                outcome = "failed" if after.status is JobStatus.FAILED else "failed (will retry)"
            elif outcome == "cancel":
                outcome = "cancelled"
                await service.acknowledge_cancel(job.id, token)
            elif outcome == "shutdown":
                outcome = "handed back (shutdown)"
                await service.release_job(job.id, token, "handed back: worker shut down")
            span.end(outcome, error)
            self.processed += 1
            logger.info(
                "job %s %s %s in %.3fs (attempt %d/%d)%s",
                job.id,
                job.job_type,
                outcome,
                time.monotonic() - started,
                job.attempts,
                job.max_attempts,
                f": {error}" if error else "",
            )
        except LeaseLost as exc:
            logger.warning("job %s: %s", job.id, exc)
        finally:
            span.end("interrupted")  # when the attempt ended by an exception (else a no-op)
            if context._flush_task is not None:
                # A coalesced progress write must not land after the job was handed on.
                context._flush_task.cancel()
            self.running.pop(job.id, None)

    async def _run_in_thread(self, handler: Callable[[JobContext], Any], context: JobContext) -> Any:
        """Run a plain ``def`` handler in the pool's threads (at most ``concurrency`` at once).

        A thread cannot be interrupted: on a timeout, cancel or stop the attempt ends as for an
        async handler, but the function runs on until it returns and its result is dropped.
        A plain function that returns an awaitable (``lambda ctx: coro(ctx)``) has it awaited
        here, on the loop.
        """
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"jobqueue-{self.worker_id}")
        context._loop = asyncio.get_running_loop()
        result = await context._loop.run_in_executor(self._threads, handler, context)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _interrupt(self, running: _Running, reason: str) -> None:
        # Only inside the handler: after it, the task is writing the outcome, which a cancel
        # would cut off (the write would still commit, but its bookkeeping would not run).
        if running.stop_reason is None and running.in_handler and running.task is not None:
            running.stop_reason = reason
            running.task.cancel()

    async def _keep_leases(self) -> None:
        """Renew leases every third of the lease; stop handlers that were cancelled or lost."""
        interval = min(self.lease / 3, CANCEL_CHECK_INTERVAL)
        next_renewal = time.monotonic() + self.lease / 3
        while True:
            await asyncio.sleep(interval)
            if not self.running:
                next_renewal = time.monotonic() + self.lease / 3
                continue
            try:
                for job_id in await self.service.cancel_requested(self.worker_id):
                    if job_id in self.running:
                        self._interrupt(self.running[job_id], "cancel")
                # Half a tick of slack: when the tick equals the renewal period, a strict
                # comparison misses every other renewal by a hair and leaves only a third of
                # the lease as margin.
                if time.monotonic() + interval / 2 >= next_renewal:
                    next_renewal = time.monotonic() + self.lease / 3
                    await self._renew_all()
            except Exception:
                # This task must outlive any failed round (a read error is a raw sqlite3
                # error, not a JobQueueError): if it died, every running job would lose its
                # lease and run a second time elsewhere.
                logger.exception("lease upkeep failed; retrying next tick")

    async def _renew_all(self) -> None:
        running = [r for r in self.running.values() if r.stop_reason is None]
        results = await asyncio.gather(
            *(self.service.heartbeat(r.claimed.job.id, r.claimed.claim_token) for r in running),
            return_exceptions=True,
        )
        for item, result in zip(running, results):
            if isinstance(result, LeaseLost):
                # Once the handler returned, the job's own outcome (written meanwhile) is what
                # ended the claim: nothing was lost.
                if item.in_handler:
                    logger.warning("job %s: lease lost (%s); stopping its handler", item.claimed.job.id, result)
                    self._interrupt(item, "lease_lost")
            elif isinstance(result, BaseException):
                logger.error("heartbeat of job %s failed: %s", item.claimed.job.id, result)
            elif result:
                self._interrupt(item, "cancel")

    async def _drain(self) -> None:
        if self._tasks:
            done, pending = await asyncio.wait(set(self._tasks), timeout=self.shutdown_grace)
            for running in list(self.running.values()):
                self._interrupt(running, "shutdown")
            if pending:
                await asyncio.wait(pending)


class Reaper:
    """Returns jobs whose lease lapsed to the queue (or fails them); safe to run in every process."""

    def __init__(self, service: JobQueueService, interval: float | None = None) -> None:
        self.service = service
        self.interval = interval if interval is not None else max(0.1, min(service.settings.lease_seconds / 4, 5.0))

    async def run(self) -> None:
        next_cleanup = time.monotonic()
        while True:
            try:
                for job in await self.service.reap_expired():
                    logger.warning("job %s: lease expired; now %s (%s)", job.id, job.status.value, job.error)
                if time.monotonic() >= next_cleanup:
                    next_cleanup = time.monotonic() + LAPSED_WORKERS_CLEANUP_INTERVAL
                    await self.service.delete_lapsed_workers()
            except Exception:
                # Same as the lease keeper: one failed round must not end reaping for good.
                logger.exception("reaper failed; retrying after %.1fs", self.interval)
            await asyncio.sleep(self.interval)
