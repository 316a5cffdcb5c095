"""Async Python client for the jobqueue HTTP API (httpx + msgspec)::

    async with JobQueueClient("http://127.0.0.1:8000") as client:
        job = await client.enqueue("generation", {"model": "musicgen-small", "prompt": "rain"})
        done = await client.wait(job.id, timeout=60)   # raises JobFailed / JobCancelled
        print(done.result_data)

Results are the service's own ``msgspec`` Structs (``Job``, ``JobList``, ``JobStats``,
``JobEvent``), decoded straight from the response bytes. Errors are typed: ``JobNotFound``,
``ApiError`` (any other error response, with its status and body), ``ConnectionFailed``,
``JobFailed`` / ``JobCancelled`` and ``WaitTimeout`` from ``wait``.

Connection failures are retried only where repeating the request cannot do anything twice: GETs,
and ``enqueue`` when it carries an idempotency key (the server answers a replay with the job the
first attempt created). ``cancel``, ``retry`` and an enqueue without a key are sent once.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import time
from contextlib import aclosing
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec
from msgspec import UNSET, UnsetType

from jobqueue.models import (
    TERMINAL_EVENT_KINDS,
    TERMINAL_STATUSES,
    BatchResult,
    BulkResult,
    AttemptList,
    ErrorBody,
    Job,
    JobEvent,
    JobList,
    JobStats,
    JobStatus,
    Worker,
    WorkerList,
    Schedule,
    ScheduleList,
    RateLimit,
    TypeControls,
    TypeControlsList,
)

T = TypeVar("T")

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
#: Seconds without a byte (not even a keep-alive comment) after which an event stream is taken
#: for dropped and reopened. The server sends a keep-alive well within this.
STREAM_IDLE_TIMEOUT = 60.0
#: Longest single long-poll ``wait`` asks the server for; it asks again until its own deadline.
LONG_POLL_SECONDS = 30.0
#: Seconds between GETs when the server has neither an event stream nor a wait endpoint.
POLL_SECONDS = 0.5

# Every transport failure, a refused connection included, falls under one rule (repeat only what
# is idempotent) rather than guessing from httpx's exception type whether the request was sent.
_TRANSPORT_ERRORS = (httpx.TransportError,)


# -- errors ----------------------------------------------------------------------------------------


class ClientError(Exception):
    """Base of every error the client raises."""


class ConnectionFailed(ClientError):
    """The server could not be reached (refused, reset, timed out), after any safe retries."""


class ApiError(ClientError):
    """The server answered with an error status. ``body`` is its ``ErrorBody`` when it sent one."""

    def __init__(self, status_code: int, body: ErrorBody | None, text: str) -> None:
        self.status_code = status_code
        self.body = body
        self.text = text
        detail = f"{body.error}: {body.detail}" if body is not None else (text.strip()[:200] or "no body")
        super().__init__(f"HTTP {status_code}: {detail}")

    @property
    def code(self) -> str | None:
        return self.body.error if self.body is not None else None


class JobNotFound(ApiError):
    """The job does not exist (HTTP 404 ``job_not_found``)."""

    def __init__(self, job_id: str, status_code: int, body: ErrorBody | None, text: str) -> None:
        super().__init__(status_code, body, text)
        self.job_id = job_id


class JobFailed(ClientError):
    """``wait`` saw the job end without completing; ``job`` is its final state."""

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(f"job {job.id} {job.status.value}: {job.error or job.message or 'no error given'}")


class JobCancelled(JobFailed):
    """``wait`` saw the job cancelled (a ``JobFailed``, so one ``except`` catches both)."""


class WaitTimeout(ClientError, TimeoutError):
    """``wait`` gave up before the job finished; ``job`` is the last state seen, if any."""

    def __init__(self, job_id: str, timeout: float, job: Job | None) -> None:
        self.job_id = job_id
        self.job = job
        super().__init__(f"job {job_id} did not finish within {timeout:g}s")


class _StreamUnavailable(Exception):
    """The server has no such endpoint (an older server): fall back to the next way of waiting."""


# -- server-sent events ----------------------------------------------------------------------------


class ServerSentEvent(msgspec.Struct, frozen=True):
    event: str
    data: str
    id: str | None = None


class SSEParser:
    """The ``text/event-stream`` line protocol (WHATWG HTML, "event stream interpretation").

    Feed it lines without their terminator; it returns an event when a blank line completes one.
    ``last_event_id`` keeps the last ``id:`` seen, as a browser's EventSource does.
    """

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, event_id = self._data, self._event or "message", self._id
        self._data, self._event, self._id = [], "", None
        if not data:
            return None
        return ServerSentEvent(event=event, data="\n".join(data), id=event_id)


# -- the client ------------------------------------------------------------------------------------


class JobQueueClient:
    """One connection pool to one jobqueue server. Use as an async context manager, or ``aclose()``.

    ``api_key`` is sent as ``Authorization: Bearer <key>`` (default: the ``JOBQUEUE_API_KEY``
    environment variable; none when it is unset, for a server with authentication off). ``retries`` is how many times a safe request is repeated after a connection failure, with
    exponential backoff from ``backoff`` seconds. ``transport`` and ``headers`` go to httpx
    (for instance an ``httpx.ASGITransport`` to talk to an app in-process).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.1,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        api_key = api_key or os.environ.get("JOBQUEUE_API_KEY") or None
        auth = {} if api_key is None else {"authorization": f"Bearer {api_key}"}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            headers={"accept": "application/json", **auth, **(headers or {})},
            transport=transport,
        )

    async def __aenter__(self) -> JobQueueClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- jobs -------------------------------------------------------------------------------------

    async def enqueue(
        self,
        job_type: str,
        request_data: dict[str, Any] | None = None,
        *,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,
        run_at: datetime | None = None,
        delay: float | None = None,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        depends_on: Sequence[str] | None = None,
        on_dependency_failure: str | None = None,
        unique_key: str | None = None,
        debounce: float | None = None,
    ) -> Job:
        """Queue a job. With ``idempotency_key`` a repeat returns the job the first call created.

        ``concurrency_key`` (a tenant, a user) is what the type's ``max_running_per_key`` counts.
        ``depends_on``: the job is ``blocked`` until these jobs completed (see
        ``on_dependency_failure``). ``unique_key``: while a job with this key is unfinished, a
        repeat returns that job; ``debounce`` seconds: the job runs that long after the last
        repeat, with the last repeat's request_data.
        """
        body: dict[str, Any] = {"job_type": job_type, "priority": priority}
        optional = {
            "request_data": request_data,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "run_at": run_at,
            "delay": delay,
            "idempotency_key": idempotency_key,
            "concurrency_key": concurrency_key,
            "depends_on": None if depends_on is None else list(depends_on),
            "on_dependency_failure": on_dependency_failure,
            "unique_key": unique_key,
            "debounce": debounce,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return await self._call(
            "POST", "/api/jobs", Job, json=body, safe=idempotency_key is not None
        )

    async def get(self, job_id: str) -> Job:
        return await self._call("GET", f"/api/jobs/{job_id}", Job, job_id=job_id)

    async def attempts(self, job_id: str) -> AttemptList:
        """The job's attempts, oldest first, with the error and traceback of each that failed."""
        return await self._call("GET", f"/api/jobs/{job_id}/attempts", AttemptList, job_id=job_id)

    async def list(
        self,
        *,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        job_type: str | None = None,
        worker_id: str | None = None,
        id_prefix: str | None = None,
        data: Mapping[str, str | int | float] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobList:
        """One page of jobs, newest first; ``JobList.total`` counts every match.

        ``id_prefix`` keeps the jobs whose id starts with it; ``data`` maps top-level fields of
        ``request_data`` to the string or number each must equal (``data.<field>`` in the API).
        """
        params: list[tuple[str, str | int]] = [("limit", limit), ("offset", offset)]
        if isinstance(status, (str, JobStatus)):
            status = [status]
        for value in status or ():
            params.append(("status", JobStatus(value).value))
        if job_type:
            params.append(("job_type", job_type))
        if worker_id:
            params.append(("worker_id", worker_id))
        if id_prefix:
            params.append(("id_prefix", id_prefix))
        params.extend((f"data.{name}", str(value)) for name, value in (data or {}).items())
        return await self._call("GET", "/api/jobs", JobList, params=params)

    async def stats(self, job_type: str | None = None) -> JobStats:
        path = "/api/jobs/stats" if job_type is None else f"/api/jobs/stats/{job_type}"
        return await self._call("GET", path, JobStats)

    async def cancel(self, job_id: str) -> Job:
        """Cancel: a waiting job at once; a running one is stopped by its worker shortly after."""
        return await self._call("POST", f"/api/jobs/{job_id}/cancel", Job, job_id=job_id)

    async def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again with a fresh set of attempts."""
        return await self._call("POST", f"/api/jobs/{job_id}/retry", Job, job_id=job_id)

    # -- bulk operations --------------------------------------------------------------------------

    async def enqueue_many(self, jobs: Sequence[dict[str, Any]], *, atomic: bool = False) -> BatchResult:
        """Queue up to 1,000 jobs (each a ``POST /api/jobs`` body) in one request and one
        transaction. By default the valid ones are stored and each refused one is reported in
        its item; with ``atomic`` any refused item raises ``ApiError`` (422 ``batch_refused``)
        and nothing is stored. Repeated after a connection failure only when every job carries
        an idempotency key."""
        body = {"jobs": list(jobs), "atomic": atomic}
        safe = all(job.get("idempotency_key") for job in jobs)
        return await self._call("POST", "/api/jobs/batch", BatchResult, json=body, safe=safe)

    async def retry_failed(self, job_type: str, *, limit: int | None = None) -> BulkResult:
        """Retry up to ``limit`` (server default 1,000) failed jobs of a type; ``more`` says
        whether failed jobs of it remain."""
        return await self._call(
            "POST", f"/api/job-types/{job_type}/retry-failed", BulkResult, params=_limit(limit)
        )

    async def cancel_waiting(self, job_type: str, *, limit: int | None = None) -> BulkResult:
        """Cancel up to ``limit`` waiting jobs of a type; ``more`` says whether some remain."""
        return await self._call(
            "POST", f"/api/job-types/{job_type}/cancel-waiting", BulkResult, params=_limit(limit)
        )

    async def purge(
        self,
        status: JobStatus | str | Sequence[JobStatus | str],
        *,
        job_type: str | None = None,
        before: datetime | None = None,
        limit: int | None = None,
    ) -> BulkResult:
        """Delete up to ``limit`` finished jobs in ``status`` (optionally of a type, finished
        before ``before``) with their events; ``more`` says whether more match."""
        statuses = [status] if isinstance(status, (str, JobStatus)) else list(status)
        params: list[tuple[str, str | int]] = [("status", JobStatus(s).value) for s in statuses]
        if job_type:
            params.append(("job_type", job_type))
        if before is not None:
            params.append(("before", before.isoformat()))
        params += _limit(limit)
        return await self._call("DELETE", "/api/jobs", BulkResult, params=params)

    # -- worker pools -----------------------------------------------------------------------------

    async def workers(self) -> WorkerList:
        """The live worker pools, and the job types with waiting jobs none of them serves."""
        return await self._call("GET", "/api/workers", WorkerList)

    async def register_worker(
        self, worker_id: str, *, host: str, pid: int, job_types: Sequence[str], concurrency: int, ttl: float = 15.0
    ) -> Worker:
        """Register a remote pool (one claiming over HTTP), or renew its registration: call it
        again every third of ``ttl`` seconds as the pool's heartbeat."""
        body = {"host": host, "pid": pid, "job_types": list(job_types), "concurrency": concurrency, "ttl": ttl}
        return await self._call("PUT", f"/api/workers/{worker_id}", Worker, json=body, safe=True)

    async def unregister_worker(self, worker_id: str) -> None:
        """A remote pool stopped: it is no longer listed."""
        await self._call("DELETE", f"/api/workers/{worker_id}", type(None), safe=True)

    # -- periodic jobs ------------------------------------------------------------------------------

    async def schedules(self) -> list[Schedule]:
        """Every schedule, with its next and last tick."""
        return (await self._call("GET", "/api/schedules", ScheduleList)).items

    async def schedule(self, name: str) -> Schedule:
        return await self._call("GET", f"/api/schedules/{name}", Schedule)

    async def put_schedule(
        self,
        name: str,
        job_type: str,
        *,
        cron: str | None = None,
        every: float | None = None,
        timezone: str = "UTC",
        request_data: dict[str, Any] | None = None,
        missed: str = "skip",
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> Schedule:
        """Create or replace a schedule (admin): a ``cron`` expression or ``every`` N seconds."""
        body: dict[str, Any] = {"job_type": job_type, "timezone": timezone, "missed": missed, "priority": priority}
        optional = {
            "cron": cron,
            "every": every,
            "request_data": request_data,
            "max_attempts": max_attempts,
            "timeout": timeout,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        # Safe to repeat: the same body replaces the schedule with itself.
        return await self._call("PUT", f"/api/schedules/{name}", Schedule, json=body, safe=True)

    async def delete_schedule(self, name: str) -> None:
        await self._call("DELETE", f"/api/schedules/{name}", type(None))

    async def pause_schedule(self, name: str) -> Schedule:
        return await self._call("POST", f"/api/schedules/{name}/pause", Schedule, safe=True)

    async def resume_schedule(self, name: str) -> Schedule:
        return await self._call("POST", f"/api/schedules/{name}/resume", Schedule)

    async def run_schedule(self, name: str) -> Job:
        """Queue one job of the schedule now."""
        return await self._call("POST", f"/api/schedules/{name}/run", Job)

    # -- flow control per job type ----------------------------------------------------------------

    async def job_types(self) -> builtins.list[TypeControls]:  # ``list`` is a method here
        """Every job type with controls or jobs: pause, limits, running jobs, next start."""
        return (await self._call("GET", "/api/job-types", TypeControlsList)).items

    async def job_type(self, job_type: str) -> TypeControls:
        return await self._call("GET", _type_path(job_type), TypeControls)

    async def pause(self, job_type: str) -> TypeControls:
        """Stop every worker from claiming jobs of the type; running jobs finish (``admin``)."""
        return await self._call("POST", _type_path(job_type, "/pause"), TypeControls, safe=True)

    async def resume(self, job_type: str) -> TypeControls:
        return await self._call("POST", _type_path(job_type, "/resume"), TypeControls, safe=True)

    async def set_limits(
        self,
        job_type: str,
        *,
        max_running: int | None | UnsetType = UNSET,
        max_running_per_key: int | None | UnsetType = UNSET,
        rate: tuple[int, float] | RateLimit | None | UnsetType = UNSET,
    ) -> TypeControls:
        """Set the limits given, or clear them with None; the others keep their values (``admin``).
        ``rate`` is ``(limit, period_seconds)``: at most ``limit`` starts in any such window."""
        body: dict[str, Any] = {}
        if max_running is not UNSET:
            body["max_running"] = max_running
        if max_running_per_key is not UNSET:
            body["max_running_per_key"] = max_running_per_key
        if isinstance(rate, tuple):
            body["rate"] = {"limit": rate[0], "period": rate[1]}
        elif rate is not UNSET:
            body["rate"] = rate
        return await self._call("PATCH", _type_path(job_type), TypeControls, json=body, safe=True)

    async def delete(self, job_id: str) -> None:
        """Delete a finished job and its events (``ApiError`` 409 while it is not finished)."""
        await self._call("DELETE", f"/api/jobs/{job_id}", type(None), job_id=job_id)

    async def health(self) -> tuple[int, dict[str, Any]]:
        """``GET /health`` (needs no key): its status code and body, a 503 included."""
        try:
            response = await self._http.get("/health")
        except _TRANSPORT_ERRORS as exc:
            raise ConnectionFailed(_describe(exc, self.base_url)) from None
        try:
            body = msgspec.json.decode(response.content, type=dict[str, Any])
        except msgspec.DecodeError:
            raise ApiError(response.status_code, None, response.text) from None
        return response.status_code, body

    # -- waiting and events -----------------------------------------------------------------------

    async def events(
        self, job_id: str, *, last_event_id: int | None = None, snapshots: bool = False
    ) -> AsyncIterator[JobEvent | Job]:
        """The job's events, in order, until its terminal event; reconnects after a drop.

        After a dropped connection the stream is reopened with ``Last-Event-ID`` so the server
        replays what was missed: no event is skipped or repeated. With ``snapshots`` the
        ``Job`` the server sends first on each connection is yielded too (its current state).
        """
        # aclosing, here and below: a reader that stops early closes the stream (and its HTTP
        # response) at once, not whenever the generators are collected, which may be after
        # their event loop has closed (the synchronous client's).
        async with aclosing(self._job_stream(job_id, last_event_id, snapshots)) as stream:
            async for item in stream:
                yield item

    async def all_events(
        self, *, job_type: str | None = None, last_event_id: int | None = None
    ) -> AsyncIterator[JobEvent]:
        """Every job's events as they happen (``GET /api/events``), for ever; reconnects after a
        drop with ``Last-Event-ID``, so no event is skipped or repeated."""
        params = {} if job_type is None else {"job_type": job_type}
        async with aclosing(self._messages("/api/events", params, lambda: last_event_id, None)) as messages:
            async for message in messages:
                event = msgspec.json.decode(message.data, type=JobEvent)
                if last_event_id is not None and event.id <= last_event_id:
                    continue
                last_event_id = event.id
                yield event

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        raise_on_failure: bool = True,
        on_update: Callable[[Job | JobEvent], None] | None = None,
    ) -> Job:
        """Wait until the job is terminal and return it.

        Follows the job's event stream; a server without one is long-polled instead (and a server
        without that is polled). ``on_update`` sees every snapshot and event as it arrives (a
        progress bar). Raises ``JobFailed``/``JobCancelled`` unless ``raise_on_failure`` is false,
        and ``WaitTimeout`` when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: list[Job] = []

        def seen(item: Job | JobEvent) -> None:
            if isinstance(item, Job):
                last[:] = [item]
            if on_update is not None:
                on_update(item)

        try:
            async with asyncio.timeout(timeout):
                try:
                    job = await self._wait_on_stream(job_id, seen)
                except _StreamUnavailable:
                    try:
                        job = await self._wait_long_poll(job_id, deadline, seen)
                    except _StreamUnavailable:
                        job = await self._wait_polling(job_id, seen)
        except TimeoutError:
            raise WaitTimeout(job_id, timeout or 0.0, last[0] if last else None) from None
        if raise_on_failure and job.status is JobStatus.CANCELLED:
            raise JobCancelled(job)
        if raise_on_failure and job.status is JobStatus.FAILED:
            raise JobFailed(job)
        return job

    async def _wait_on_stream(self, job_id: str, seen: Callable[[Job | JobEvent], None]) -> Job:
        async with aclosing(self._job_stream(job_id, None, snapshots=True)) as stream:
            async for item in stream:
                seen(item)
                if isinstance(item, Job) and item.status in TERMINAL_STATUSES:
                    return item
                if isinstance(item, JobEvent) and item.kind in TERMINAL_EVENT_KINDS:
                    break
        # The terminal event carries the outcome but not the whole record: fetch it.
        job = await self.get(job_id)
        seen(job)
        return job

    async def _wait_long_poll(
        self, job_id: str, deadline: float | None, seen: Callable[[Job | JobEvent], None]
    ) -> Job:
        while True:
            seconds = LONG_POLL_SECONDS
            if deadline is not None:
                seconds = max(0.0, min(seconds, deadline - time.monotonic()))
            job = await self._call(
                "GET",
                f"/api/jobs/{job_id}/wait",
                Job,
                job_id=job_id,
                params={"timeout": f"{seconds:.3f}"},
                timeout=seconds + self.timeout,
                missing_route=True,
            )
            seen(job)
            if job.status in TERMINAL_STATUSES:
                return job

    async def _wait_polling(self, job_id: str, seen: Callable[[Job | JobEvent], None]) -> Job:
        while True:
            job = await self.get(job_id)
            seen(job)
            if job.status in TERMINAL_STATUSES:
                return job
            await asyncio.sleep(POLL_SECONDS)

    async def _job_stream(
        self, job_id: str, last_event_id: int | None, snapshots: bool
    ) -> AsyncIterator[JobEvent | Job]:
        messages = self._messages(f"/api/jobs/{job_id}/events", {}, lambda: last_event_id, job_id)
        async with aclosing(messages):
            async for message in messages:
                if message.event == "snapshot":
                    job = msgspec.json.decode(message.data, type=Job)
                    if snapshots:
                        yield job
                    if job.status in TERMINAL_STATUSES and last_event_id is None:
                        # Joined after the end: the snapshot is the whole story.
                        return
                    if last_event_id is None and message.id and message.id.isdigit():
                        # Events up to the snapshot's seq are already in it.
                        last_event_id = int(message.id)
                    continue
                event = msgspec.json.decode(message.data, type=JobEvent)
                if last_event_id is not None and event.seq <= last_event_id:
                    continue  # already yielded before the reconnect
                last_event_id = event.seq
                yield event
                if event.kind in TERMINAL_EVENT_KINDS:
                    return

    async def _messages(
        self, path: str, params: dict[str, str], resume_from: Callable[[], int | None], job_id: str | None
    ) -> AsyncIterator[ServerSentEvent]:
        """The messages of an event stream, reopened after a drop (from ``resume_from()``, the
        caller's last event id, sent as ``Last-Event-ID``) until the caller stops reading."""
        failures = 0
        while True:
            headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
            last_event_id = resume_from()
            if last_event_id is not None:
                headers["last-event-id"] = str(last_event_id)
            parser = SSEParser()
            try:
                async with self._http.stream(
                    "GET",
                    path,
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, read=STREAM_IDLE_TIMEOUT),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise self._error(response, job_id, missing_route=True)
                    async with aclosing(response.aiter_lines()) as lines:
                        async for line in lines:
                            message = parser.feed(line)
                            if message is not None:
                                failures = 0
                                yield message
            except _TRANSPORT_ERRORS as exc:
                failures += 1
                if failures > self.retries:
                    raise ConnectionFailed(_describe(exc, self.base_url)) from None
                await asyncio.sleep(self._delay(failures))
                continue
            # The server closed the stream early (restart, proxy timeout): reopen it, resuming
            # after the last event seen.
            failures += 1
            if failures > self.retries:
                raise ConnectionFailed(f"event stream {path} keeps closing early")
            await asyncio.sleep(self._delay(failures))

    # -- plumbing ---------------------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        return float(self.backoff * 2 ** (attempt - 1))

    async def _call(
        self,
        method: str,
        path: str,
        kind: type[T],
        *,
        job_id: str | None = None,
        json: Any = None,
        params: Any = None,
        safe: bool | None = None,
        timeout: float | None = None,
        missing_route: bool = False,
    ) -> T:
        """Send one request and decode the answer into ``kind``, retrying when that is safe."""
        retryable = method == "GET" if safe is None else safe
        content = None if json is None else msgspec.json.encode(json)
        headers = None if content is None else {"content-type": "application/json"}
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=headers,
                    timeout=self.timeout if timeout is None else timeout,
                )
                break
            except _TRANSPORT_ERRORS as exc:
                attempt += 1
                if not retryable or attempt > self.retries:
                    raise ConnectionFailed(_describe(exc, self.base_url)) from None
                await asyncio.sleep(self._delay(attempt))
        if response.status_code >= 400:
            raise self._error(response, job_id, missing_route=missing_route)
        if "warning" in response.headers:
            # Say, no live worker serves the job's type: the job would wait in silence.
            logger.warning("%s %s: %s", method, path, response.headers["warning"])
        if response.status_code == 204:
            return None  # type: ignore[return-value]  # kind is NoneType: no content
        try:
            return msgspec.json.decode(response.content, type=kind)
        except msgspec.DecodeError as exc:
            raise ApiError(response.status_code, None, f"unexpected response: {exc}") from None

    @staticmethod
    def _error(response: httpx.Response, job_id: str | None, *, missing_route: bool = False) -> Exception:
        body: ErrorBody | None
        try:
            body = msgspec.json.decode(response.content, type=ErrorBody)
        except msgspec.DecodeError:
            body = None
        code = body.error if body is not None else None
        if response.status_code == 404 and code == "job_not_found" and job_id is not None:
            return JobNotFound(job_id, response.status_code, body, response.text)
        if missing_route and response.status_code in (404, 405) and code != "job_not_found":
            return _StreamUnavailable(response.url.path)
        return ApiError(response.status_code, body, response.text)


def _limit(limit: int | None) -> list[tuple[str, str | int]]:
    return [] if limit is None else [("limit", limit)]
def _type_path(job_type: str, action: str = "") -> str:
    return f"/api/job-types/{quote(job_type, safe='')}{action}"


def _describe(exc: httpx.TransportError, base_url: str) -> str:
    """One line for a transport error; httpx's own text is often empty or a nested repr."""
    reason = str(exc).strip() or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and "refused" in reason.lower():
        reason = "connection refused"
    elif isinstance(exc, httpx.TimeoutException):
        reason = f"timed out ({type(exc).__name__})"
    return f"cannot reach {base_url}: {reason}"
