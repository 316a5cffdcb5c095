"""Where a request comes from: the Host it names, and the origin of the page that sent it.

``TrustedHostMiddleware`` answers only to the host names of ``trusted_hosts(settings)``. Without
it, DNS rebinding lets any web page reach a service on 127.0.0.1: the attacker's name resolves to
the attacker's server, then to 127.0.0.1, and the page's scripts talk to us as same-origin.
The browser still sends the attacker's name as Host, which this refuses (400). ``/health``
answers any host: load balancers and orchestrators probe it by address, and it tells nothing
a rebinding page could use.

``SameOriginMiddleware`` refuses (403) a request that changes something (POST, PUT, PATCH,
DELETE) when a browser says another site sent it: an ``Origin`` that is not this host, or
``Sec-Fetch-Site: cross-site``. A page elsewhere could otherwise cancel or retry jobs with a
simple form post, which needs no body and so no Content-Type check. Clients that are not
browsers send neither header and are not affected.

Both are plain ASGI classes in the spirit of Starlette's TrustedHostMiddleware (which answers in
plain text), answering in the usual JSON error shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from jobqueue.api.errors import error_response
from jobqueue.models import ErrorBody
from jobqueue.settings import Settings

#: Methods that change state; only these are checked for their origin.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Paths answered whatever the Host: the liveness probe.
ANY_HOST_PATHS = frozenset({"/health"})


#: The names of this machine that no other site can make a browser send.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def trusted_hosts(settings: Settings) -> tuple[str, ...]:
    """``settings.allowed_hosts``, or by default the loopback names and the address the API binds."""
    if settings.allowed_hosts:
        return settings.allowed_hosts
    return tuple(dict.fromkeys((*LOOPBACK_HOSTS, settings.host.lower())))


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
        if scope["type"] != "http" or scope["path"] in ANY_HOST_PATHS:
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


class SameOriginMiddleware:
    """Refuse (403) a state-changing request that a browser says came from another origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            refused = None
            if origin is not None and not same_origin(origin, headers.get("host", "")):
                refused = f"Origin {origin!r} is not this service"
            elif headers.get("sec-fetch-site", "").lower() == "cross-site":
                refused = "Sec-Fetch-Site: cross-site"
            if refused is not None:
                body = ErrorBody(
                    error="cross_origin",
                    detail=f"{scope['method']} from a page of another site is refused ({refused})",
                    field="Origin" if refused.startswith("Origin") else "Sec-Fetch-Site",
                )
                await error_response(403, body)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def same_origin(origin: str, host: str) -> bool:
    """Whether an ``Origin`` header names the host and port of the ``Host`` header.

    Schemes are not compared: behind a TLS proxy the page is https and the request reaches us
    as http. A Host without a port means the default port of the origin's scheme.
    """
    parts = urlsplit(origin.strip())
    target = split_host(host)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or target is None:
        return False  # "null" (sandboxed frames, file: pages) and anything else is another origin
    default_port = _DEFAULT_PORTS[parts.scheme]
    try:
        origin_port = parts.port or default_port
    except ValueError:  # not a port number
        return False
    name, port = target
    return parts.hostname.rstrip(".") == name and origin_port == (port or default_port)
