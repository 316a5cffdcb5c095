"""The HTTP/1.1 protocol uvicorn runs the API with: httptools, with the request head bounded.

uvicorn offers two parsers. httptools (llhttp, in C) is its default and the fast one: on this
machine the API served 1.4x the enqueues per second with it than with h11 (see
benchmarks/README.md). But uvicorn sets no limit on the request head with httptools: a client
sending one endless header made the server hold all of it (100 MiB were accepted). h11 bounds
the head, at h11's speed.

``BoundedHttpToolsProtocol`` keeps httptools and adds the bound: the bytes received while a
request's head is incomplete are counted before the parser sees them, the parser is never fed
more of a head than ``MAX_HEADER_BYTES``, and a longer head is answered ``431`` in the API's
error shape, and the connection closed. It is handed to uvicorn as its ``http`` protocol class
(a documented setting) and overrides three methods of uvicorn's own class; a test sends such a
head through a real server, so an uvicorn that changed them fails the suite rather than the
bound.
"""

from __future__ import annotations

from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from jobqueue.models import ErrorBody

#: Largest request head (request line and headers together), in bytes.
MAX_HEADER_BYTES = 64 * 1024

_HEAD_TOO_LARGE = msgspec.json.encode(
    ErrorBody(error="header_too_large", detail=f"request head is larger than {MAX_HEADER_BYTES} bytes")
)
_HEAD_TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n\r\n%s" % (len(_HEAD_TOO_LARGE), _HEAD_TOO_LARGE)
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head over ``MAX_HEADER_BYTES``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Between requests (and before the first) the next bytes are a head.
        self._in_head = True
        self._head_bytes = 0
        self._requests = 0

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
            return
        room = MAX_HEADER_BYTES - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # One read may hold the end of the head and a body: parse what the head may still
        # take; if that did not finish it, the head is too large.
        requests = self._requests
        super().data_received(data[:room])
        if self.transport.is_closing():
            return  # the parser refused the request
        if self._in_head and self._requests == requests:
            self.logger.warning("request head over %d bytes refused", MAX_HEADER_BYTES)
            self.transport.write(_HEAD_TOO_LARGE_RESPONSE)
            self.transport.close()
            return
        self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        self._requests += 1


#: How uvicorn serves the API (``serve``, and the benchmark's server).
UVICORN_HTTP_OPTIONS: dict[str, Any] = {"http": BoundedHttpToolsProtocol}
