"""Bounds on what one request can make the server hold or parse.

The body is counted while it arrives, on every route, before any endpoint sees it: a declared
``Content-Length`` above the limit is refused before a byte is read, and a body sent without one
(chunked) is refused as soon as it passes the limit. The request head is bounded by the HTTP
parser (``MAX_HEADER_BYTES``, set where uvicorn is started). JSON nesting is bounded before the
body is decoded (``nested_too_deep``), and integers in it to what every JSON parser reads back
exactly, and text to what every backend stores (``unstorable_value``).
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobqueue.api.errors import RequestError, error_response
from jobqueue.models import ErrorBody

#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 1024 * 1024
#: Largest request head (request line and headers together), in bytes.
MAX_HEADER_BYTES = 64 * 1024
#: How uvicorn parses HTTP/1.1 for the API (``serve``, and the benchmark's server): with h11,
#: which bounds the request head while reading it and answers a longer one with 400. httptools,
#: uvicorn's default, has no such limit: it held a single 100 MiB header in memory.
UVICORN_HTTP_OPTIONS: dict[str, Any] = {"http": "h11", "h11_max_incomplete_event_size": MAX_HEADER_BYTES}
#: Deepest nesting of arrays and objects in a JSON body. Far below what msgspec and SQLite's
#: JSON functions handle (a job nested ~970 deep was stored, then broke every listing of it),
#: and far above what a job's data needs.
MAX_JSON_DEPTH = 64
#: Largest magnitude of an integer in JSON data: beyond 2^53, parsers that read numbers as
#: doubles (JavaScript's, and many others by default) silently return a different number.
MAX_JSON_INTEGER = 2**53

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


# A JSON string, or the unterminated rest of a malformed body. Possessive, so a hostile body
# cannot make it backtrack.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
# Opening brackets become 1, closing ones -1 (read as signed bytes).
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def nested_too_deep(body: bytes) -> bool:
    """Whether the arrays and objects of a JSON text nest deeper than ``MAX_JSON_DEPTH``.

    Counted on the text, because decoding is recursive: msgspec raises RecursionError below
    1000 levels. Brackets inside strings do not count.
    """
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False  # not even that many openings, in strings or not: the usual case
    steps = _STRING.sub(b"", body).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b"))) > MAX_JSON_DEPTH


def unstorable_value(fields: dict[str, Any]) -> tuple[str, str] | None:
    """Where (``request_data.a[2]``) decoded JSON holds what not every backend can store and
    read back, and why; None when there is nothing of the kind.

    ``fields`` are the top-level fields of a body. Refused: integers beyond
    ``MAX_JSON_INTEGER`` (JSON parsers do not all read them back exactly), and text with a NUL
    character (PostgreSQL's text and jsonb cannot hold it; refused on SQLite too, so both
    backends answer the same).
    """
    pending: list[tuple[dict[str, Any] | list[Any], str]] = [(fields, "")]
    while pending:
        container, path = pending.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in items:
            if isinstance(key, str) and "\x00" in key:
                return _path(path, key.replace("\x00", "\\u0000")), NUL_TEXT
            if isinstance(item, (dict, list)):
                pending.append((item, _path(path, key)))
            elif isinstance(item, str) and "\x00" in item:
                return _path(path, key), NUL_TEXT
            elif isinstance(item, int) and abs(item) > MAX_JSON_INTEGER:
                return _path(path, key), BIG_INTEGER
    return None


#: Why a value cannot be stored (the end of the 422's detail).
BIG_INTEGER = "is an integer beyond ±2^53, which JSON parsers do not all read back exactly; send it as a string"
NUL_TEXT = "contains a NUL character (\\u0000), which the database cannot store"


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key
