"""Bounds on what one request can make the server hold or parse.

The body is counted while it arrives, on every route, before any endpoint sees it: a declared
``Content-Length`` above the limit is refused before a byte is read, and a body sent without one
(chunked) is refused as soon as it passes the limit. The request head is bounded while it
arrives, by the HTTP protocol uvicorn runs (jobqueue.api.protocol). JSON nesting is bounded
before the body is decoded (``nested_too_deep``), and integers in it to what every JSON parser reads back
exactly, and text to what every backend stores (``unstorable_value``, in jobqueue.jsonlimits:
the worker holds a handler's result to the same bounds).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobqueue.api.errors import RequestError, error_response
from jobqueue.jsonlimits import MAX_JSON_DEPTH, MAX_JSON_INTEGER, nested_too_deep, unstorable_value
from jobqueue.models import ErrorBody

__all__ = ["MAX_JSON_DEPTH", "MAX_JSON_INTEGER", "nested_too_deep", "unstorable_value"]

#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 1024 * 1024
_TOO_LARGE = f"body is larger than {MAX_BODY_BYTES} bytes"


class BodyTooLarge(RequestError):
    def __init__(self) -> None:
        super().__init__(413, "payload_too_large", _TOO_LARGE)


class BodyLimitMiddleware:
    """Refuse bodies over ``MAX_BODY_BYTES`` with 413 in the usual error shape, counting as they arrive.

    An endpoint reading past the limit gets ``BodyTooLarge`` from ``receive`` (answered as 413 by
    the app's error handlers); the rest of the body is never read, and the server closes the
    connection after the answer. Should the response have started already (a stream that only
    listens for the client leaving), the client is treated as gone instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        # The server has already refused a Content-Length that is not a number.
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            body = ErrorBody(error="payload_too_large", detail=_TOO_LARGE)
            await error_response(413, body)(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    if started:
                        return {"type": "http.disconnect"}
                    raise BodyTooLarge()
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, watching_send)
