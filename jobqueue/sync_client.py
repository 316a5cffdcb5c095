"""A synchronous client for scripts and WSGI apps (Flask, Django)::

    from jobqueue.sync_client import SyncJobQueueClient

    with SyncJobQueueClient("http://127.0.0.1:8000") as client:
        job = client.enqueue("generation", {"model": "musicgen-small", "prompt": "rain"})
        done = client.wait(job.id, timeout=60)   # raises JobFailed / JobCancelled
        print(done.result_data)

It drives the async ``JobQueueClient`` on an event loop of its own, in one daemon thread, so
both clients have the same behaviour by construction: the same errors (``JobNotFound``,
``ApiError``, ``ConnectionFailed``, ``JobFailed``, ``WaitTimeout``), the same retry rules, the
same event-stream ``wait``. One instance may be shared by the threads of a WSGI server; its
calls run concurrently on the loop. After a ``fork`` (gunicorn's pre-fork workers) the child
starts a loop of its own on first use instead of waiting on the parent's, which did not survive.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from jobqueue.client import DEFAULT_URL, JobQueueClient
from jobqueue.models import Job, JobList, JobStats, TypeControls

T = TypeVar("T")


class SyncJobQueueClient:
    """Blocking counterparts of ``JobQueueClient``'s calls; takes the same options."""

    def __init__(self, base_url: str = DEFAULT_URL, **options: Any) -> None:
        self.base_url = base_url
        self._options = options
        self._lock = threading.Lock()
        self._pid = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: JobQueueClient | None = None

    def __enter__(self) -> SyncJobQueueClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- jobs (see JobQueueClient for the parameters) ---------------------------------------------

    def enqueue(self, job_type: str, request_data: Any = None, **options: Any) -> Job:
        """Queue a job; ``options`` are ``JobQueueClient.enqueue``'s keyword arguments."""
        return self._run(lambda client: client.enqueue(job_type, request_data, **options))

    def get(self, job_id: str) -> Job:
        return self._run(lambda client: client.get(job_id))

    def wait(self, job_id: str, *, timeout: float | None = None, raise_on_failure: bool = True) -> Job:
        """Block until the job is terminal (see ``JobQueueClient.wait``)."""
        return self._run(lambda client: client.wait(job_id, timeout=timeout, raise_on_failure=raise_on_failure))

    def list(self, **filters: Any) -> JobList:
        return self._run(lambda client: client.list(**filters))

    def stats(self, job_type: str | None = None) -> JobStats:
        return self._run(lambda client: client.stats(job_type))

    def cancel(self, job_id: str) -> Job:
        return self._run(lambda client: client.cancel(job_id))

    def retry(self, job_id: str) -> Job:
        return self._run(lambda client: client.retry(job_id))

    # -- flow control per job type (see JobQueueClient) ----------------------------------------------

    def job_types(self) -> builtins.list[TypeControls]:  # ``list`` is a method here
        return self._run(lambda client: client.job_types())

    def pause(self, job_type: str) -> TypeControls:
        return self._run(lambda client: client.pause(job_type))

    def resume(self, job_type: str) -> TypeControls:
        return self._run(lambda client: client.resume(job_type))

    def set_limits(self, job_type: str, **limits: Any) -> TypeControls:
        """``limits``: ``JobQueueClient.set_limits``'s keyword arguments (None clears one)."""
        return self._run(lambda client: client.set_limits(job_type, **limits))

    def close(self) -> None:
        """Close the connections and stop the loop's thread (a closed client reopens on use)."""
        with self._lock:
            loop, thread, client = self._loop, self._thread, self._client
            self._loop = self._thread = self._client = None
            self._pid = -1
        if loop is None or thread is None or client is None or not thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(client.aclose(), loop).result()
        # As asyncio.run does before closing its loop: finish the async generators still open
        # there, or they are finalized after the loop is gone (reported as an ignored exception).
        asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def _run(self, call: Any) -> Any:
        loop, client = self._started()
        coroutine: Coroutine[Any, Any, Any] = call(client)
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def _started(self) -> tuple[asyncio.AbstractEventLoop, JobQueueClient]:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None or self._client is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="jobqueue-sync-client", daemon=True)
                thread.start()

                async def open_client() -> JobQueueClient:
                    # Built on its loop: httpx binds its connection pool to the loop that uses it.
                    return JobQueueClient(self.base_url, **self._options)

                self._client = asyncio.run_coroutine_threadsafe(open_client(), loop).result()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop, self._client
