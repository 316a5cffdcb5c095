"""schemathesis hooks of tests/test_schemathesis.py, loaded with SCHEMATHESIS_HOOKS.

Long polls are kept short: a claim may wait up to 60 s and ``/wait`` up to 300 s (30 s when no
timeout is given) for a job that never comes, since no worker runs. A wait within its range is
lowered to ``SHORT_WAIT`` before the request is sent, which keeps a valid request valid
(schemathesis revalidates a case a hook edits); an invalid one is sent as generated.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from jobqueue.api.routes import MAX_CLAIM_WAIT
from jobqueue.api.sse import MAX_WAIT_SECONDS

SHORT_WAIT = 0.05


def _shortened(value: Any, longest: float) -> Any:
    """``value`` lowered to ``SHORT_WAIT`` when it is a number from 0 to ``longest``.

    Query values may come as text ("299.0").
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return min(number, SHORT_WAIT) if 0 <= number <= longest else value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path = case.operation.path
    if path == "/api/workers/claim" and isinstance(case.body, dict) and "wait" in case.body:
        case.body = {**case.body, "wait": _shortened(case.body["wait"], MAX_CLAIM_WAIT)}
    elif path == "/api/jobs/{job_id}/wait":
        query = dict(case.query or {})
        query["timeout"] = _shortened(query.get("timeout", 30), MAX_WAIT_SECONDS)
        case.query = query
