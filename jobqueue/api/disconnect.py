"""Noticing that the client of a long request went away.

Starlette does not cancel a plain (non-streaming) endpoint when its client disconnects. An
endpoint that waits would keep waiting for nobody: ``/wait`` held its event subscription until its
timeout, and a long-poll claim kept claiming, taking jobs for a worker that was gone (they then
sat under a lease nobody renewed, and the retry cost them an attempt).

``watch_disconnect`` reads the request's ASGI messages in the background. Once the body has been
read, the next message the server sends is ``http.disconnect``, when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request


@contextlib.asynccontextmanager
async def watch_disconnect(request: Request, *wake: asyncio.Event) -> AsyncIterator[asyncio.Event]:
    """Yield an event set once the client disconnects; ``wake`` events are set along with it.

    The endpoint must have read its body before entering (or take none): the watcher consumes
    the request's remaining messages.
    """
    gone = asyncio.Event()

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass  # the end of an empty body: the next message is the disconnect
        gone.set()
        for event in wake:
            event.set()

    watcher = asyncio.create_task(watch(), name="jobqueue-watch-disconnect")
    try:
        yield gone
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
