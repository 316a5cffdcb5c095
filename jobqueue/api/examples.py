"""Example bodies of the HTTP contract, shown by ``/docs`` and put in ``/openapi.json``.

Each is a realistic value of one msgspec type, keyed by that type; ``build_openapi`` adds it to
the type's schema as ``examples`` (JSON Schema 2020-12, which OpenAPI 3.1 uses), and the tests
decode each one with the type itself, so an example cannot drift from what the API accepts.
"""

from __future__ import annotations

from typing import Any

from jobqueue.api.routes import (
    CancelRequest,
    ClaimRequest,
    CompleteRequest,
    FailRequest,
    TokenRequest,
    UpdateRequest,
)
from jobqueue.handlers.generation import GenerateRequest
from jobqueue.models import (
    ApiKeyCreate,
    BatchCreate,
    ErrorBody,
    Job,
    JobCreate,
    ProgressUpdate,
    ScheduleSpec,
    TypeControlsUpdate,
    WorkerRegistration,
)

_CLAIM_TOKEN = "Vq3xk0N2c8mJpTz4yW1rLbQe"
_JOB_ID = "7c0f5a1e-2b4d-4e8a-9f3c-1d2e3f4a5b6c"

#: type -> one example value of it.
EXAMPLES: dict[type, Any] = {
    JobCreate: {
        "job_type": "thumbnail",
        "request_data": {"src": "s3://photos/2026/beach.jpg", "w": 320, "h": 240},
        "priority": 5,
        "max_attempts": 3,
        "timeout": 60,
        "delay": 10,
        "idempotency_key": "thumb-beach-320",
    },
    BatchCreate: {
        "jobs": [
            {"job_type": "thumbnail", "request_data": {"src": "s3://photos/2026/beach.jpg", "w": 320}},
            {"job_type": "thumbnail", "request_data": {"src": "s3://photos/2026/dunes.jpg", "w": 320}, "priority": 5},
        ],
        "atomic": False,
    },
    ScheduleSpec: {
        "job_type": "report",
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "request_data": {"kind": "daily"},
        "missed": "catch_up",
    },
    TypeControlsUpdate: {"max_running": 2, "max_running_per_key": 1, "rate": {"limit": 100, "period": 60}},
    WorkerRegistration: {
        "host": "gpu-a",
        "pid": 4242,
        "job_types": ["thumbnail", "resize"],
        "concurrency": 8,
        "ttl": 15,
    },
    UpdateRequest: {"status": "processing", "progress": 10, "message": "started by hand"},
    ProgressUpdate: {"progress": 40, "message": "resized 4 of 10 images", "status": "rendering", "claim_token": _CLAIM_TOKEN},
    CancelRequest: {"claim_token": _CLAIM_TOKEN},
    ClaimRequest: {"worker_id": "host-a:4242", "job_types": ["thumbnail", "resize"], "limit": 5, "wait": 30},
    TokenRequest: {"claim_token": _CLAIM_TOKEN},
    CompleteRequest: {
        "claim_token": _CLAIM_TOKEN,
        "result_data": {"url": "s3://thumbs/2026/beach-320.jpg", "bytes": 18231},
        "message": "done",
    },
    FailRequest: {"claim_token": _CLAIM_TOKEN, "error": "OSError: source image not found", "retry": True},
    GenerateRequest: {"prompt": "a calm piano over soft rain", "duration": 30, "priority": 1},
    ApiKeyCreate: {"name": "ci-workers", "scopes": ["worker"], "job_types": ["thumbnail"]},
    ErrorBody: {"error": "validation_error", "detail": "Expected `int`, got `str` - at `$.priority`", "field": "priority"},
    Job: {
        "id": _JOB_ID,
        "status": "processing",
        "progress": 40,
        "job_type": "thumbnail",
        "priority": 5,
        "request_data": {"src": "s3://photos/2026/beach.jpg", "w": 320, "h": 240},
        "result_data": None,
        "message": "resized 4 of 10 images",
        "error": None,
        "created_at": "2026-11-29T03:08:18.731747Z",
        "updated_at": "2026-11-29T03:08:21.102311Z",
        "started_at": "2026-11-29T03:08:19.004512Z",
        "completed_at": None,
        "worker_id": "host-a:4242",
        "attempts": 1,
        "max_attempts": 3,
        "run_at": "2026-11-29T03:08:18.731747Z",
        "timeout": 60,
        "lease_expires_at": "2026-11-29T03:08:51.102311Z",
        "cancel_requested": False,
        "idempotency_key": "thumb-beach-320",
        "event_seq": 4,
    },
}


def add_examples(components: dict[str, Any]) -> None:
    """Put each type's example into its schema among ``components`` (as ``examples``)."""
    for kind, example in EXAMPLES.items():
        schema = components.get(kind.__name__)
        if schema is not None:
            schema["examples"] = [example]
