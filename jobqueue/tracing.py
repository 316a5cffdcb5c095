"""Optional OpenTelemetry: a job remembers the trace it was enqueued in, and each attempt runs in a
span linked to it.

With the ``otel`` extra installed (``opentelemetry-api``), an enqueue stores the trace context of
its caller with the job (``Job.trace_context``, the propagation carrier: ``traceparent`` and
``tracestate`` with the default W3C propagator): over HTTP the request's own headers (what an
instrumented client sends), in Python the span current when ``create_job`` is called (a handler
enqueueing a follow-up job passes its own span on). Each attempt of the job then runs in a
``CONSUMER`` span ``jobqueue.run <type>`` whose link points at that context: a job's retries are
several spans linked to the same enqueue, and no attempt's span becomes a child of a request that
ended long ago (links, not parents, as the OpenTelemetry messaging conventions advise for work
that runs later). The span carries the job's id, type and attempt; an exception is recorded on it
and sets its status to error.

Without the extra nothing is captured, stored or started: ``AVAILABLE`` is False and every
function here returns at once. With the API but no SDK configured, OpenTelemetry's own no-op
tracer makes the spans free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # the extra is not installed: tracing is off
    AVAILABLE = False
else:
    AVAILABLE = True

if TYPE_CHECKING:
    from jobqueue.models import Job

#: The carrier keys kept from a request's headers (the W3C Trace Context ones, which the default
#: propagator reads); anything else a client sends is not stored.
CARRIER_KEYS = ("traceparent", "tracestate")
#: Longest carrier value kept (W3C: traceparent is 55 characters, tracestate at most 512).
MAX_CARRIER_VALUE = 512
#: The tracer's instrumentation scope.
TRACER_NAME = "jobqueue"


def from_headers(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The trace context a request carries (its ``traceparent`` and ``tracestate`` headers),
    or, when the server itself is instrumented, the context of the span handling it."""
    if not AVAILABLE:
        return None
    carrier = {
        key: value for key in CARRIER_KEYS if (value := headers.get(key)) and len(value) <= MAX_CARRIER_VALUE
    }
    if "traceparent" in carrier and _valid(carrier):
        return carrier
    return current()


def current() -> dict[str, str] | None:
    """The carrier of the span current in this task (None when there is no valid one)."""
    if not AVAILABLE or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {key: value for key, value in carrier.items() if key in CARRIER_KEYS} or None


def _valid(carrier: dict[str, str]) -> bool:
    """Whether the propagator reads a valid remote span context from ``carrier`` (a malformed
    traceparent is dropped rather than stored)."""
    extracted = propagate.extract(carrier)
    return bool(trace.get_current_span(extracted).get_span_context().is_valid)


class AttemptSpan:
    """The span of one attempt of a job: started before its handler, current while the handler
    runs (so the handler's own spans are its children and the jobs it enqueues link to it), and
    ended with the attempt's outcome. Without the extra every method does nothing."""

    __slots__ = ("span",)

    def __init__(self, job: Job) -> None:
        self.span: Any = None
        if not AVAILABLE:
            return
        links = []
        if job.trace_context:
            linked = trace.get_current_span(propagate.extract(job.trace_context)).get_span_context()
            if linked.is_valid:
                links.append(Link(linked, {"jobqueue.link": "enqueued"}))
        # A root span (an empty parent context): the attempt is not a child of whatever the
        # worker's task carried, nor of a request that ended long ago.
        self.span = trace.get_tracer(TRACER_NAME).start_span(
            f"jobqueue.run {job.job_type}",
            context=otel_context.Context(),
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "jobqueue",
                "messaging.operation.type": "process",
                "messaging.message.id": job.id,
                "jobqueue.job.type": job.job_type,
                "jobqueue.job.attempt": job.attempts,
                "jobqueue.job.max_attempts": job.max_attempts,
            },
        )

    def current(self) -> contextlib.AbstractContextManager[Any]:
        """Make the span current; an exception leaving the block is recorded on it (with its
        stack) and sets its status to error."""
        if self.span is None:
            return contextlib.nullcontext()
        return trace.use_span(self.span, end_on_exit=False, record_exception=True, set_status_on_exception=True)

    def end(self, outcome: str, error: str = "") -> None:
        """End the span with the attempt's outcome (``completed``, ``failed``, ...); only the
        first call counts."""
        if self.span is None:
            return
        span, self.span = self.span, None  # ends once: a later call is a no-op
        span.set_attribute("jobqueue.job.outcome", outcome)
        if outcome.startswith("failed"):
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()
