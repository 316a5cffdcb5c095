"""Live streams (Server-Sent Events) and waiting without polling.

``GET /api/jobs/{id}/events``: one job. First a ``snapshot`` event (the job as it is, with the
sequence number of its latest event as ``id:``), then each event as it happens, ``id:`` being
its per-job sequence number. A reconnect with ``Last-Event-ID: N`` (header, or ``?last_event_id=N``)
replays the events after N from the database instead of the snapshot, so a client sees every
event exactly once, in order. The stream ends after the terminal event.

``GET /api/events``: every job's events (``?job_type=``, ``?status=`` filters), ``id:`` being the
global event id, always increasing; ``Last-Event-ID`` replays from the database the same way. A
fresh connection starts after the newest stored event. It never ends.

Both are capped (``MAX_STREAMS`` per process: 503, ``MAX_STREAMS_PER_CLIENT`` per remote
address: 429, each with ``Retry-After``). Both send ``: keep-alive`` comments when idle. A client too slow to read is cut off (the stream
closes) and resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from jobqueue.api.auth import principal, requires
from jobqueue.api.disconnect import watch_disconnect
from jobqueue.api.errors import RequestError
from jobqueue.api.responses import JSONResponse
from jobqueue.api.routes import _query_statuses, check_job_type, get_job_queue_service
from jobqueue.events import Delivery, ListenerCutOff
from jobqueue.models import TERMINAL_EVENT_KINDS, TERMINAL_STATUSES, JobEvent, KeyScope
from jobqueue.service import JobQueueService

#: Longest ``timeout`` of ``GET /api/jobs/{id}/wait``, in seconds.
MAX_WAIT_SECONDS = 300.0
#: Largest event id (and ``Last-Event-ID``): the largest integer SQLite stores.
MAX_EVENT_ID = 2**63 - 1

#: Seconds a client refused for too many streams is told to wait (``Retry-After``).
STREAMS_RETRY_AFTER = 5

_EVENT_ID = re.compile(r"[0-9]{1,19}")

_encode = msgspec.json.Encoder().encode
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_message(event: str, event_id: int, data: bytes) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event.encode(), data)


def _event_message(event: JobEvent, event_id: int) -> bytes:
    """An event read from the database (a replay): encoded for this stream alone."""
    return sse_message(event.kind.value, event_id, _encode(event))


def _delivered_message(delivery: Delivery, event_id: int) -> bytes:
    """A live event: its JSON was encoded once by the hub for every listener."""
    return sse_message(delivery.event.kind.value, event_id, delivery.data)


class StreamSlots:
    """Bounds the event streams open at once: ``total`` in this process and ``per_client`` per
    API key (per remote address when the request has no key). Each idle stream costs a
    connection, a queue and CPU for every event; a client refused is told when to retry instead
    of exhausting the process."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open = 0
        self._by_client: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """One slot for the stream's lifetime; a 503 (process full) or 429 (client) otherwise."""
        retry = {"Retry-After": str(STREAMS_RETRY_AFTER)}
        if self.open >= self.total:
            raise RequestError(
                503, "too_many_streams", f"this server has {self.total} event streams open, its limit", headers=retry
            )
        held = self._by_client.get(client, 0)
        if held >= self.per_client:
            raise RequestError(
                429, "too_many_streams", f"{client} has {held} event streams open, its limit", headers=retry
            )
        self.open += 1
        self._by_client[client] = held + 1
        try:
            yield
        finally:
            self.open -= 1
            left = self._by_client[client] - 1
            if left:
                self._by_client[client] = left
            else:
                del self._by_client[client]


def _hold_stream(request: Request) -> contextlib.AbstractContextManager[None]:
    slots: StreamSlots = request.state.streams
    key_id = principal(request).key_id
    if key_id is not None:
        return slots.hold(f"key {key_id}")
    return slots.hold(request.client.host if request.client is not None else "unknown")


def _last_event_id(request: Request) -> int | None:
    """The ``Last-Event-ID`` header, else the ``last_event_id`` query parameter; both are checked."""
    header = _event_id("Last-Event-ID", request.headers.get("last-event-id"))
    query = _event_id("last_event_id", request.query_params.get("last_event_id"))
    return header if header is not None else query


def _event_id(name: str, raw: str | None) -> int | None:
    if not raw:
        return None
    # Only what the server itself sends as an id: int() would also take "+3", "1_000" and " 7".
    if _EVENT_ID.fullmatch(raw) is None or int(raw) > MAX_EVENT_ID:
        raise RequestError(
            400, "bad_request", f"{name} must be an event id, an integer from 0 to {MAX_EVENT_ID}, got {raw!r}", name
        )
    return int(raw)


def _stream(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=_HEADERS)


@requires(KeyScope.READ, KeyScope.ENQUEUE)
async def job_event_stream(request: Request) -> Response:
    service = get_job_queue_service(request)
    job_id = request.path_params["job_id"]
    last_event_id = _last_event_id(request)
    with contextlib.ExitStack() as opening:
        opening.enter_context(_hold_stream(request))
        # Subscribe before reading the job, so nothing that happens in between is missed.
        subscription = opening.enter_context(service.events.subscribe(lambda e: e.job_id == job_id))
        job = await service.require_job(job_id)  # a 404 leaves the with: unsubscribed
        principal(request).require_type(job.job_type)
        stack = opening.pop_all()  # from here the stream's body owns the subscription
    keepalive = service.settings.sse_keepalive

    async def body() -> AsyncIterator[bytes]:
        with stack:
            if last_event_id is None:
                yield sse_message("snapshot", job.event_seq, _encode(job))
                last = job.event_seq
            else:
                last = last_event_id
                for event in await _replay(service, job_id, last):
                    yield _event_message(event, event.seq)
                    last = event.seq
                    if event.kind in TERMINAL_EVENT_KINDS:
                        return
            if job.status in TERMINAL_STATUSES and last >= job.event_seq:
                return
            while True:
                try:
                    delivery = await subscription.receive(timeout=keepalive)
                except ListenerCutOff:
                    return  # the client resumes with Last-Event-ID
                if delivery is None:
                    yield b": keep-alive\n\n"
                    continue
                event = delivery.event
                if event.seq <= last:
                    continue  # already sent (snapshot or replay)
                if event.seq == last + 1:
                    yield _delivered_message(delivery, event.seq)
                    last = event.seq
                    if event.kind in TERMINAL_EVENT_KINDS:
                        return
                    continue
                # A later event overtook an earlier one (say, from another process over Redis):
                # the database has them all, in order.
                for item in await _replay(service, job_id, last):
                    yield _event_message(item, item.seq)
                    last = item.seq
                    if item.kind in TERMINAL_EVENT_KINDS:
                        return

    return _stream(body())


async def _replay(service: JobQueueService, job_id: str, after: int) -> list[JobEvent]:
    events: list[JobEvent] = []
    while True:
        page = await service.job_events(job_id, after)
        events.extend(page)
        if len(page) < 1000:
            return events
        after = page[-1].seq


@requires(KeyScope.READ)
async def all_events_stream(request: Request) -> Response:
    service = get_job_queue_service(request)
    job_type = request.query_params.get("job_type") or None
    statuses = frozenset(_query_statuses(request) or ())
    last_event_id = _last_event_id(request)
    visible = principal(request).job_types
    if job_type is not None:
        principal(request).require_type(job_type)

    def wanted(event: JobEvent) -> bool:
        return (
            (job_type is None or event.job_type == job_type)
            and (visible is None or event.job_type in visible)
            and (not statuses or event.status in statuses)
        )

    with contextlib.ExitStack() as opening:
        opening.enter_context(_hold_stream(request))
        # Every event, not only the wanted ones: then a gap in the global ids always means an
        # event of another process still on its way, which the database already has.
        subscription = opening.enter_context(service.events.subscribe(lambda event: True))
        # Subscribed before reading, so nothing committed in between is missed.
        start = last_event_id if last_event_id is not None else await service.last_event_id()
        stack = opening.pop_all()  # from here the stream's body owns the subscription
    keepalive = service.settings.sse_keepalive

    async def body() -> AsyncIterator[bytes]:
        with stack:
            if last_event_id is None:
                yield b": connected\n\n"
            last = start
            # Sent strictly in global id order, because the id is where a client resumes: with
            # 11 sent before 10, a client dropping in between would skip 10 for good. Events of
            # other processes can arrive after newer local ones, so a gap is read from the
            # database (as is everything missed before a resume).
            pending: AsyncIterator[JobEvent] | None = (
                None if last_event_id is None else _events_after(service, last)
            )
            while True:
                if pending is not None:
                    async for event in pending:
                        if event.id > last:
                            last = event.id
                            if wanted(event):
                                yield _event_message(event, event.id)
                    pending = None
                try:
                    delivery = await subscription.receive(timeout=keepalive)
                except ListenerCutOff:
                    return
                if delivery is None:
                    yield b": keep-alive\n\n"
                    continue
                # Everything already queued goes out as one write: the cost of a stream is per
                # wake-up and per send, far more than per event (see benchmarks/README.md).
                messages: list[bytes] = []
                for delivery in [delivery, *subscription.drain()]:
                    event = delivery.event
                    if event.id == last + 1:
                        last = event.id
                        if wanted(event):
                            messages.append(_delivered_message(delivery, event.id))
                    elif event.id > last:
                        # The rest is stored too: the replay from the database sends it.
                        pending = _events_after(service, last)
                        break
                if messages:
                    yield b"".join(messages)

    return _stream(body())


async def _events_after(service: JobQueueService, after: int) -> AsyncIterator[JobEvent]:
    """Every stored event after global id ``after``, a page at a time."""
    while True:
        page = await service.events_after(after)
        for event in page:
            yield event
        if len(page) < 1000:
            return
        after = page[-1].id


@requires(KeyScope.READ, KeyScope.ENQUEUE)
async def wait_for_job(request: Request) -> Response:
    raw = request.query_params.get("timeout", "30")
    try:
        timeout = float(raw)
    except ValueError:
        raise RequestError(422, "validation_error", f"timeout must be a number, got {raw!r}", "timeout") from None
    if not 0 <= timeout <= MAX_WAIT_SECONDS:
        raise RequestError(
            422, "validation_error", f"timeout must be between 0 and {MAX_WAIT_SECONDS:g} seconds", "timeout"
        )
    service = get_job_queue_service(request)
    await check_job_type(request, request.path_params["job_id"])
    async with watch_disconnect(request) as gone:
        # The wait holds an event subscription: end it when the client leaves, not at timeout.
        waiter = asyncio.ensure_future(service.wait_for_job(request.path_params["job_id"], timeout))
        leaving = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait((waiter, leaving), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, leaving):
                if not task.done():
                    task.cancel()
            await asyncio.gather(waiter, leaving, return_exceptions=True)
        if waiter.cancelled():
            return Response(status_code=204)  # never delivered: nobody is listening
    return JSONResponse(waiter.result())


routes = [
    Route("/api/jobs/{job_id}/events", job_event_stream, methods=["GET"]),
    Route("/api/jobs/{job_id}/wait", wait_for_job, methods=["GET"]),
    Route("/api/events", all_events_stream, methods=["GET"]),
]
