"""Domain exceptions. The HTTP layer maps each to one status code (see ``api/errors.py``)."""

from __future__ import annotations


class JobQueueError(Exception):
    """Base of every error jobqueue raises on purpose."""

    #: Short machine-readable code, used as ``error`` in HTTP error bodies.
    code = "jobqueue_error"


class ConfigError(JobQueueError):
    """A setting has a value that cannot work; the message names it."""

    code = "config_error"


class MigrationError(JobQueueError):
    """The migrations on disk and the database disagree; the message says how."""

    code = "migration_error"


class DatabaseError(JobQueueError):
    """The database cannot be used (missing features, unreadable file)."""

    code = "database_error"


class JobNotFound(JobQueueError):
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} does not exist")
        self.job_id = job_id


class InvalidTransition(JobQueueError):
    """The change is not allowed from the job's current status (HTTP 409)."""

    code = "invalid_transition"


class LeaseLost(JobQueueError):
    """The caller's claim token is not the job's current claim (HTTP 409).

    The job was reclaimed after the lease expired, cancelled, or finished by someone else; whatever
    the caller was about to write would overwrite the work of the job's current owner, so it is refused.
    """

    code = "lease_lost"


class JobHeld(JobQueueError):
    """An unfenced change of a job a worker holds (HTTP 409).

    The holder would go on running and then report over the change (or a second worker would run
    the job beside it); send the holder's claim token, cancel the job, or force the change (which
    fences the holder out).
    """

    code = "job_held"


class IdempotencyConflict(JobQueueError):
    """An idempotency key was reused with a different request (HTTP 422)."""

    code = "idempotency_conflict"


class ValidationFailed(JobQueueError):
    """A value is outside what the service accepts (HTTP 422)."""

    code = "validation_error"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class Unauthorized(JobQueueError):
    """No API key, or one that is unknown or revoked (HTTP 401)."""

    code = "unauthorized"


class Forbidden(JobQueueError):
    """The key is valid but lacks the scope or job type the request needs (HTTP 403)."""

    code = "forbidden"


class ApiKeyNotFound(JobQueueError):
    code = "key_not_found"

    def __init__(self, key: str) -> None:
        super().__init__(f"no API key has the id or name {key!r}")
        self.key = key


class ApiKeyExists(JobQueueError):
    """A key in use already has this name (HTTP 409); revoke it first or pick another name."""

    code = "key_exists"


class BatchRefused(JobQueueError):
    """An all-or-nothing batch with invalid items (HTTP 422): nothing was stored.

    ``errors`` holds each refused item's index in the batch and why it was refused.
    """

    code = "batch_refused"

    def __init__(self, errors: list[tuple[int, JobQueueError]], size: int) -> None:
        super().__init__(batch_refused_detail(len(errors), size))
        self.errors = errors


def batch_refused_detail(refused: int, size: int) -> str:
    return f"{refused} of {size} jobs of the batch were refused, so none was stored (atomic batch); see items"


class ScheduleNotFound(JobQueueError):
    code = "schedule_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} does not exist")
        self.name = name
