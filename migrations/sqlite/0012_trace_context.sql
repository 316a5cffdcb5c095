-- The trace context a job was enqueued in (jobqueue/tracing.py, with the otel extra): the
-- propagation carrier as a JSON object ({"traceparent": ..., "tracestate": ...}); NULL without
-- one. Each attempt's span links to it.
ALTER TABLE jobs ADD COLUMN trace_context TEXT;
