"""Where a request comes from: the Host it names.

``TrustedHostMiddleware`` answers only to the host names of ``Settings.trusted_hosts``. Without
it, DNS rebinding lets any web page reach a service on 127.0.0.1: the attacker's name resolves to
the attacker's server, then to 127.0.0.1, and the page's scripts talk to us as same-origin.
The browser still sends the attacker's name as Host, which this refuses (400).

A plain ASGI class in the spirit of Starlette's TrustedHostMiddleware (which answers in plain
text), answering in the usual JSON error shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from jobqueue.api.errors import error_response
from jobqueue.models import ErrorBody


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a Host header value (``example.com:8000``, ``[::1]``), None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):  # an IPv6 literal
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif value.count(":") > 1:  # a bare IPv6 address, as some clients send it
        name, port = value, ""
    else:
        name, _, port = value.partition(":")
    if not name or (port and not (port.isascii() and port.isdigit())):
        return None
    return name.rstrip("."), int(port) if port else None


class TrustedHostMiddleware:
    """Answer only requests whose Host header names one of ``allowed_hosts`` (400 otherwise)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allow_any = "*" in allowed_hosts
        self.names = frozenset(h for h in allowed_hosts if not h.startswith("*"))
        self.suffixes = tuple(h[1:] for h in allowed_hosts if h.startswith("*."))

    def allows(self, name: str) -> bool:
        return self.allow_any or name in self.names or name.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = Headers(scope=scope).get("host", "")
        host = split_host(raw)
        if host is None or not self.allows(host[0]):
            body = ErrorBody(
                error="host_not_allowed",
                detail=f"this service does not answer to the host {raw!r}; allow it with ALLOWED_HOSTS",
                field="Host",
            )
            await error_response(400, body)(scope, receive, send)
            return
        await self.app(scope, receive, send)
