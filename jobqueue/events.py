"""The event hub: every job event of every process, delivered to this process's listeners.

The database is the source of truth: each change of a job writes a ``JobEvent`` row in the same
transaction. After the commit the store hands the events to its listeners (``EventHub.publish``), which

* delivers them at once to listeners in this process (SSE streams, waiters, worker wake-ups), and
* publishes them on Redis (when configured), where every other process's hub receives them over
  its one pub/sub connection.

Redis delivery is best-effort. A poller reads new rows of ``job_events`` (every 0.25 s without
Redis or while Redis is unreachable, every 2 s as a safety net while it is up, and at once when
the store signals a commit of another process: PostgreSQL's LISTEN/NOTIFY), so events made in
other processes arrive even without Redis, and nothing published while Redis was down is lost:
it reaches the listeners late instead. Each event is dispatched once per process (by global id).

Listeners get a bounded queue. One that does not keep up is cut off (``ListenerCutOff``) instead
of growing memory; an SSE client then resumes with ``Last-Event-ID`` and the stream replays what
it missed from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from jobqueue.models import JobEvent
from jobqueue.storage import Store

logger = logging.getLogger(__name__)

#: The Redis pub/sub channel carrying every job event. Each message is a JSON array of one or
#: more ``JobEvent`` objects (the events one process committed together).
EVENTS_CHANNEL = "jobqueue:events"

#: Seconds between polls of the events table without Redis (or while it is unreachable).
FAST_POLL_INTERVAL = 0.25
#: Seconds between safety-net polls while Redis is up.
SLOW_POLL_INTERVAL = 2.0
#: Seconds between liveness pings of Redis, and how long one may take before Redis counts as
#: unreachable. A frozen server keeps the pub/sub socket open without sending anything: only a
#: ping notices it.
REDIS_PING_INTERVAL = 1.0
REDIS_PING_TIMEOUT = 2.0
#: Events one listener may have waiting before it is cut off.
LISTENER_QUEUE_SIZE = 2000
#: Events waiting to be published on Redis before new ones are dropped (the poller covers them).
PUBLISH_QUEUE_SIZE = 50_000

_encode = msgspec.json.Encoder().encode
_decode_events = msgspec.json.Decoder(list[JobEvent]).decode


class ListenerCutOff(Exception):
    """The listener fell too far behind and was dropped; resume from the database."""


class Delivery(NamedTuple):
    """One dispatched event as every listener of this process gets it."""

    event: JobEvent
    #: The event's JSON, encoded once for all listeners (the ``data:`` of an SSE message).
    data: bytes


class Subscription:
    """A bounded queue of the events one listener wants."""

    def __init__(self, match: Callable[[JobEvent], bool], maxsize: int) -> None:
        self.match = match
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize)
        self.cut_off = False

    def wants(self, event: JobEvent) -> bool:
        return not self.cut_off and self.match(event)

    def offer(self, delivery: Delivery) -> bool:
        """Queue a wanted event; returns False when this offer cut the listener off."""
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.cut_off = True
            return False
        return True

    async def get(self, timeout: float) -> JobEvent | None:
        """The next event, or None after ``timeout`` seconds without one."""
        delivery = await self.receive(timeout)
        return None if delivery is None else delivery.event

    def drain(self) -> list[Delivery]:
        """Every event already queued, without waiting."""
        deliveries: list[Delivery] = []
        while not self.queue.empty():
            deliveries.append(self.queue.get_nowait())
        return deliveries

    async def receive(self, timeout: float) -> Delivery | None:
        """The next event with its JSON, or None after ``timeout`` seconds without one."""
        if self.cut_off and self.queue.empty():
            raise ListenerCutOff("listener fell behind and was cut off")
        if not self.queue.empty():
            # wait_for wraps the get in a task of its own: too dear for every event of every
            # listener when one is already waiting.
            return self.queue.get_nowait()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            if self.cut_off:
                raise ListenerCutOff("listener fell behind and was cut off") from None
            return None


class EventHub:
    def __init__(self, store: Store, redis_url: str | None) -> None:
        self.store = store
        self.redis_url = redis_url
        self._subscriptions: set[Subscription] = set()
        self._callbacks: list[Callable[[JobEvent], None]] = []
        #: Whether some callback wants every event (not only those putting a job in the queue).
        self._callbacks_want_all = False
        #: Bumped by each new subscription: a poll that fetched only new-work events while it
        #: ran fetches again, so the new listener misses nothing the poll read.
        self._subscribed = 0
        self._commit_listeners: list[Callable[[list[JobEvent]], None]] = []
        # Each event is dispatched once per process. Every id up to the poll's cursor has been
        # dispatched (commits happen in id order, and the poll reads all of them); above it,
        # the ids dispatched early (local commits, Redis) are remembered until the poll passes
        # them. Memory is bounded by what commits between two polls, not by a window size.
        self._seen: set[int] = set()
        self._cursor = 0
        self._outbox: asyncio.Queue[JobEvent] = asyncio.Queue(PUBLISH_QUEUE_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self._redis_up = False
        self._redis_answers = False
        self._poll_now = asyncio.Event()
        # One catch-up at a time: a second one reading before the first advanced the cursor
        # would set it back, and the next poll would deliver those events again.
        self._catch_up_lock = asyncio.Lock()
        #: Whether the store signals other processes' commits (LISTEN/NOTIFY).
        self.signals = False
        #: Counters for metrics and health.
        self.published = 0
        self.dropped = 0
        self.cut_off = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._cursor = await self.store.last_event_id()
        self.store.add_listener(self.publish)
        # PostgreSQL's NOTIFY (when available) says "someone committed events": poll at once
        # instead of at the next interval.
        self.signals = await self.store.listen(self._poll_now.set)
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="jobqueue-events-poller"))
        if self.redis_url is not None:
            self._tasks.append(asyncio.create_task(self._subscribe_loop(), name="jobqueue-events-sub"))
            self._tasks.append(asyncio.create_task(self._publish_loop(), name="jobqueue-events-pub"))
            self._tasks.append(asyncio.create_task(self._ping_loop(), name="jobqueue-events-ping"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    @property
    def redis_state(self) -> str:
        """``not configured``, ``ok`` or ``degraded`` (unreachable; the database poll stands in)."""
        if self.redis_url is None:
            return "not configured"
        return "ok" if self._redis_live else "degraded"

    @property
    def _redis_live(self) -> bool:
        """Subscribed, and the server answered its last ping in time."""
        return self._redis_up and self._redis_answers

    @property
    def listener_count(self) -> int:
        return len(self._subscriptions)

    # -- listening ----------------------------------------------------------------------------

    @contextmanager
    def subscribe(
        self, match: Callable[[JobEvent], bool], maxsize: int = LISTENER_QUEUE_SIZE
    ) -> Iterator[Subscription]:
        subscription = Subscription(match, maxsize)
        self._subscriptions.add(subscription)
        self._subscribed += 1
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def add_commit_listener(self, listener: Callable[[list[JobEvent]], None]) -> None:
        """Call ``listener(events)`` with the events this process commits, before they are
        dispatched (metrics count them once, in the process that made them)."""
        self._commit_listeners.append(listener)

    def add_callback(self, callback: Callable[[JobEvent], None], *, new_work_only: bool = False) -> None:
        """Call ``callback(event)`` for every event (it must be quick and must not raise).

        ``new_work_only``: the callback only acts on events that put a job in the queue
        (``JobEvent.signals_new_work``); it may still be called with others. While every
        callback says so and nothing is subscribed, the poll fetches only those from the
        database: a worker process then does not read and decode all the events the other
        processes commit (with two worker processes, that was a quarter of each one's CPU).
        """
        self._callbacks.append(callback)
        self._callbacks_want_all = self._callbacks_want_all or not new_work_only

    # -- delivering ---------------------------------------------------------------------------

    def publish(self, events: list[JobEvent]) -> None:
        """Deliver committed events here and, through Redis, to every other process."""
        for listener in self._commit_listeners:
            listener(events)
        for event in events:
            self._dispatch(event)
            if self.redis_url is not None:
                try:
                    self._outbox.put_nowait(event)
                except asyncio.QueueFull:
                    self.dropped += 1  # other processes get it from their database poll

    def _dispatch(self, event: JobEvent) -> None:
        if event.id <= self._cursor or event.id in self._seen:
            return
        self._seen.add(event.id)
        delivery: Delivery | None = None
        for subscription in list(self._subscriptions):
            if not subscription.wants(event):
                continue
            if delivery is None:  # encoded once, and only when someone listens
                delivery = Delivery(event, _encode(event))
            if not subscription.offer(delivery):
                self.cut_off += 1
                logger.warning("an event listener fell behind and was cut off")
        for callback in self._callbacks:
            callback(event)

    async def _poll_loop(self) -> None:
        while True:
            interval = SLOW_POLL_INTERVAL if self._redis_live else FAST_POLL_INTERVAL
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the stop's
            # cancel when the signal arrives at the same moment, and the poller runs on.
            with contextlib.suppress(TimeoutError):  # the interval passed without a signal
                async with asyncio.timeout(interval):
                    await self._poll_now.wait()
            self._poll_now.clear()
            try:
                await self.catch_up()
            except Exception as exc:  # keep polling through a transient database error
                logger.error("polling the events table failed: %s", exc)

    async def catch_up(self) -> None:
        """Dispatch every event committed since the last poll (by any process)."""
        async with self._catch_up_lock:
            await self._catch_up()

    async def _catch_up(self) -> None:
        while True:
            subscribed = self._subscribed
            new_work_only = not (self._callbacks_want_all or self._subscriptions)
            events, last, read = await self.store.unseen_events_after(
                self._cursor, self._seen, limit=1000, new_work_only=new_work_only
            )
            if new_work_only and self._subscribed != subscribed:
                continue  # a listener arrived meanwhile: read the same ids again, every event
            for event in events:
                self._dispatch(event)
            self._cursor = last
            self._seen = {i for i in self._seen if i > last}
            if read < 1000:
                return

    async def _subscribe_loop(self) -> None:
        assert self.redis_url is not None
        backoff = 0.1
        while True:
            client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(EVENTS_CHANNEL)
                if not self._redis_up:
                    logger.info("Redis event channel connected")
                self._redis_up = True
                backoff = 0.1
                # Whatever was published while we were away comes from the database.
                await self.catch_up()
                async for message in pubsub.listen():
                    try:
                        for event in _decode_events(message["data"]):
                            self._dispatch(event)
                    except msgspec.DecodeError as exc:
                        logger.warning("ignoring a malformed event on %s: %s", EVENTS_CHANNEL, exc)
            except (RedisError, OSError) as exc:
                if self._redis_up:
                    logger.warning("Redis unreachable (%s); events now come from the database", exc)
                self._redis_up = False
            finally:
                await pubsub.aclose()
                await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _ping_loop(self) -> None:
        assert self.redis_url is not None
        client = aioredis.Redis.from_url(
            self.redis_url, socket_connect_timeout=REDIS_PING_TIMEOUT, socket_timeout=REDIS_PING_TIMEOUT
        )
        try:
            while True:
                try:
                    await asyncio.wait_for(client.ping(), REDIS_PING_TIMEOUT)
                    if not self._redis_answers:
                        logger.info("Redis answers pings")
                    self._redis_answers = True
                except (RedisError, OSError, TimeoutError) as exc:
                    if self._redis_answers:
                        logger.warning("Redis does not answer (%r); events now come from the database", exc)
                    self._redis_answers = False
                await asyncio.sleep(REDIS_PING_INTERVAL)
        finally:
            await client.aclose()

    async def _publish_loop(self) -> None:
        assert self.redis_url is not None
        client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            while True:
                batch = [await self._outbox.get()]
                while not self._outbox.empty() and len(batch) < 500:
                    batch.append(self._outbox.get_nowait())
                try:
                    # One message per batch: under load this is one PUBLISH for hundreds of
                    # events instead of one each, on both sides of the channel.
                    await client.publish(EVENTS_CHANNEL, _encode(batch))
                    self.published += len(batch)
                except (RedisError, OSError) as exc:
                    # Not retried: the other processes' database poll delivers these events.
                    self.dropped += len(batch)
                    logger.debug("publishing %d events failed: %s", len(batch), exc)
                    await asyncio.sleep(0.5)
        finally:
            await client.aclose()
