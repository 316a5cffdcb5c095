"""Who may do what over HTTP: API keys, scopes, job types, and the browser's login.

``AuthMiddleware`` (a plain ASGI class) finds who a request is before routing and sets
``scope["auth"]`` to a ``Principal``; it answers 401 itself. Each endpoint says which scopes it
needs with ``@requires(...)`` (403 otherwise), which ``/openapi.json`` reads too; endpoints that
see a job also check the key's job types.

Credentials, in order: ``Authorization: Bearer <key>`` (API clients; on ``/metrics`` also
``METRICS_TOKEN``), then the session cookie a browser gets from the login form. A state-changing
request authenticated by the cookie must come from this site's own pages (``Sec-Fetch-Site``, or
``Origin`` for browsers without it): another site's page cannot make a logged-in browser cancel
jobs. While no key exists and ``JOBQUEUE_ADMIN_KEY`` is unset, nothing is asked (``serve`` only
allows that on loopback, or with ``--insecure-no-auth``). Open in any case: ``/health``, the
login form, and the static files of the dashboard and docs pages.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from jobqueue.api.errors import error_response
from jobqueue.errors import DatabaseError, Unauthorized
from jobqueue.keys import METRICS, NOBODY, SESSION_SECONDS, KeyRing, Principal
from jobqueue.models import ErrorBody, KeyScope

Endpoint = Callable[[Request], Awaitable[Response]]

#: The cookie of a browser's login.
SESSION_COOKIE = "jobqueue_session"
#: Paths that answer without a key.
OPEN_PATHS = frozenset({"/health", "/login", "/logout"})
#: Static files of the pages (shipped code, no data).
OPEN_PREFIXES = ("/dashboard/static/", "/docs/")
#: Pages a browser opens: without credentials they redirect to the login form.
BROWSER_PAGES = frozenset({"/dashboard", "/docs"})
BROWSER_PAGE_PREFIXES = ("/dashboard/jobs/",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Largest login form accepted, in bytes.
MAX_LOGIN_BODY = 4096


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        if path == "/" and scope["method"] in ("GET", "HEAD") and _wants_a_page(Headers(scope=scope)):
            # A browser opening the service's address gets the dashboard (which asks for a
            # login itself, when keys are on); API clients still get the JSON index.
            await RedirectResponse("/dashboard", status_code=303)(scope, receive, send)
            return
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        keyring: KeyRing = scope["state"]["keyring"]
        try:
            outcome = await _authenticate(keyring, Request(scope), path)
        except DatabaseError as exc:
            outcome = error_response(503, ErrorBody(error=exc.code, detail=str(exc)))
        if isinstance(outcome, Response):
            await outcome(scope, receive, send)
            return
        scope["auth"] = outcome
        await self.app(scope, receive, send)


async def _authenticate(keyring: KeyRing, request: Request, path: str) -> Principal | Response:
    if not await keyring.required():
        return NOBODY
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _unauthorized("send the key as Authorization: Bearer <key>")
        if path == "/metrics" and keyring.is_metrics_token(token):
            return METRICS
        principal = await keyring.check_key(token)
        return _unauthorized("the API key is unknown or revoked") if principal is None else principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        principal = await keyring.check_session(cookie)
        if principal is not None:
            if request.method not in SAFE_METHODS and not same_origin(request):
                return error_response(
                    403,
                    ErrorBody(
                        error="cross_origin",
                        detail="a change made with the session cookie must come from this site's own pages",
                    ),
                )
            return principal
    if request.method == "GET" and (path in BROWSER_PAGES or path.startswith(BROWSER_PAGE_PREFIXES)):
        return RedirectResponse(f"/login?next={quote(path)}", status_code=303)
    detail = "this API needs a key: send Authorization: Bearer <key>"
    if cookie:
        detail += " (the login session has ended: log in again)"
    return _unauthorized(detail)


def _wants_a_page(headers: Headers) -> bool:
    """Whether the client asks for HTML before JSON, as browsers do (``text/html,...``); curl's
    ``*/*``, httpx's and an explicit ``application/json`` do not."""
    accept = headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept.split("text/html")[0]


def _unauthorized(detail: str) -> Response:
    response = error_response(401, ErrorBody(error=Unauthorized.code, detail=detail))
    response.headers["WWW-Authenticate"] = 'Bearer realm="jobqueue"'
    return response


def same_origin(request: Request) -> bool:
    """The request comes from a page of this site: ``Sec-Fetch-Site: same-origin``, else (older
    browsers) an ``Origin`` naming this host. Without either, it is refused."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


# -- authorization in endpoints --------------------------------------------------------------------


def principal(request: Request) -> Principal:
    """Who sent the request (set by ``AuthMiddleware``)."""
    found = request.scope.get("auth")
    if not isinstance(found, Principal):
        raise Unauthorized("no authentication ran for this request (AuthMiddleware is not installed)")
    return found


def requires(*scopes: KeyScope) -> Callable[[Endpoint], Endpoint]:
    """The endpoint needs one of ``scopes`` (admin has all); else 403. Recorded on the endpoint
    as ``required_scopes`` for the OpenAPI document."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            principal(request).require(*scopes)
            return await endpoint(request)

        checked.required_scopes = scopes  # type: ignore[attr-defined]
        return checked

    return decorate


# -- the login form ----------------------------------------------------------------------------------

_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>jobqueue: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<main>
<h1>jobqueue</h1>
<p>{message}</p>
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label>API key <input type="password" name="key" autocomplete="current-password" required autofocus></label>
<button type="submit">Log in</button>
</form>
<p>A key with the <code>read</code> scope shows the dashboard; create one with
<code>jobqueue keys create --name me --scope read</code>.</p>
</main>
</body>
</html>
"""


def _login_page(next_path: str, message: str, status_code: int = 200) -> Response:
    page = _LOGIN_PAGE.format(message=html.escape(message), next=html.escape(next_path))
    return Response(page, status_code=status_code, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


def _safe_next(raw: str | None) -> str:
    """Where to go after logging in: a path of this site only (no open redirect)."""
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/dashboard"


async def login_form(request: Request) -> Response:
    return _login_page(_safe_next(request.query_params.get("next")), "Log in with an API key.")


async def login(request: Request) -> Response:
    if not same_origin(request):
        return _login_page("/dashboard", "Log in from this site's own login page.", 403)
    body = await request.body()
    if len(body) > MAX_LOGIN_BODY:
        return _login_page("/dashboard", "The form is too large.", 413)
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    next_path = _safe_next((form.get("next") or [None])[0])
    key = (form.get("key") or [""])[0].strip()
    keyring: KeyRing = request.state.keyring
    found = await keyring.check_key(key) if key else None
    if found is None:
        return _login_page(next_path, "That key is unknown or revoked.", 401)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        await keyring.open_session(found),
        max_age=int(SESSION_SECONDS),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    if not same_origin(request):
        return _login_page("/dashboard", "Log out from this site's own pages.", 403)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await request.state.keyring.close_session(token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


routes: list[Route] = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
