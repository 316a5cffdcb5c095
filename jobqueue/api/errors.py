"""One JSON error shape for every failure: ``{"error": code, "detail": text, "field": name?}``."""

from __future__ import annotations

import logging
import re
import traceback

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from jobqueue.api.responses import JSONResponse
from jobqueue.errors import (
    ApiKeyExists,
    ApiKeyNotFound,
    DatabaseError,
    Forbidden,
    IdempotencyConflict,
    InvalidTransition,
    JobHeld,
    JobNotFound,
    JobQueueError,
    LeaseLost,
    ScheduleNotFound,
    Unauthorized,
    ValidationFailed,
)
from jobqueue.models import ErrorBody

logger = logging.getLogger(__name__)

#: HTTP status of each domain error.
STATUS_CODES: dict[type[JobQueueError], int] = {
    JobNotFound: 404,
    InvalidTransition: 409,
    LeaseLost: 409,
    JobHeld: 409,
    IdempotencyConflict: 422,
    ValidationFailed: 422,
    DatabaseError: 503,
    Unauthorized: 401,
    Forbidden: 403,
    ApiKeyNotFound: 404,
    ApiKeyExists: 409,
    ScheduleNotFound: 404,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

_FIELD_PATH = re.compile(r"at `\$\.?([^`]*)`")


class RequestError(Exception):
    """A request refused before it reaches the service: malformed (400/413/415/422) or over a
    limit (429/503, with ``Retry-After`` in ``headers``)."""

    def __init__(
        self,
        status_code: int,
        error: str,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.body = ErrorBody(error=error, detail=detail, field=field)
        self.headers = headers or {}


def validation_error(exc: msgspec.ValidationError, within: str | None = None) -> RequestError:
    """A 422 naming the offending field from msgspec's ``... - at `$.field``` message.

    ``within``: the field the validated value came from, prefixed to the path.
    """
    text = str(exc)
    match = _FIELD_PATH.search(text)
    field = match.group(1) if match and match.group(1) else None
    # At the top level msgspec names the field only in backquotes, without a path.
    if field is None and ("missing required field" in text or "unknown field" in text):
        quoted = re.search(r"`([^`$]+)`", text)
        field = quoted.group(1) if quoted else None
    if within is not None:
        field = within if field is None else f"{within}.{field}"
        text = f"{within}: {text}"
    return RequestError(422, "validation_error", text, field)


def error_response(status_code: int, body: ErrorBody) -> Response:
    return JSONResponse(body, status_code=status_code)


async def handle_request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    response = error_response(exc.status_code, exc.body)
    response.headers.update(exc.headers)
    return response


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JobQueueError)
    status = next((code for kind, code in STATUS_CODES.items() if isinstance(exc, kind)), 500)
    field = getattr(exc, "field", None)
    return error_response(status, ErrorBody(error=exc.code, detail=str(exc), field=field))


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    response = error_response(exc.status_code, ErrorBody(error=code, detail=detail))
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
    return response


def _allowed_methods(request: Request) -> set[str]:
    """The methods of every route with the path pattern that matches this path first.

    Starlette's 405 names only the methods of the first matching route, and a pattern can
    have several (GET and POST /api/jobs are two endpoints). Later patterns are not counted:
    /api/jobs/stats is its own resource, not the job "stats" of /api/jobs/{job_id}.
    """
    routes = [route for route in request.app.routes if isinstance(route, Route) and route.methods]
    first = next((route for route in routes if route.matches(request.scope)[0] is not Match.NONE), None)
    if first is None:
        return set()
    return {method for route in routes if route.path == first.path for method in route.methods or ()}


def internal_error_handler(debug: bool):  # noqa: ANN201 - Starlette handler factory
    async def handle(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        detail = "".join(traceback.format_exception(exc)) if debug else "internal server error"
        return error_response(500, ErrorBody(error="internal_error", detail=detail))

    return handle
