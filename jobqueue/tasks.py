"""Typed tasks: a handler whose parameters are declared in its signature::

    registry = Registry()

    @registry.task("resize", max_attempts=5, timeout=60, retry_on=(OSError,))
    async def resize(ctx: JobContext, src: str, w: int = 64) -> dict[str, str]:
        await ctx.progress(50, "resizing")
        return {"url": f"{src}?w={w}"}

    registry.connect(JobQueueClient("http://127.0.0.1:8000"))   # or a JobQueueService
    handle = await resize.enqueue(src="cat.png", w=128)
    print(await handle.result(timeout=60))                       # {'url': 'cat.png?w=128'}

The parameters after the context become a msgspec Struct: ``enqueue`` validates them before
sending, a server whose registry holds the task refuses a job that does not fit with 422
naming the field, and the worker converts ``request_data`` into them before the function runs
(a job that does not fit fails at once, without retries: running it again cannot help).
Options of ``enqueue`` itself take a leading underscore (``_delay``, ``_priority``, ``_via``...)
so they cannot collide with a task's parameter names (arq's convention).
"""

from __future__ import annotations

import contextvars
import inspect
import typing
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from jobqueue.client import JobCancelled, JobFailed, JobQueueClient
from jobqueue.models import Job, JobStatus

if TYPE_CHECKING:
    from jobqueue.service import JobQueueService
    from jobqueue.worker import JobContext, Registry

R = TypeVar("R")

#: The context of the job whose handler is running in this asyncio task: a task enqueued from
#: inside a handler goes where that job came from, with no connect() needed.
_running: contextvars.ContextVar[JobContext] = contextvars.ContextVar("jobqueue_running_job")


class InvalidTaskParams(Exception):
    """A job's ``request_data`` does not fit its task's parameters (never retried)."""


class RetryPolicy(msgspec.Struct, frozen=True):
    """Which exceptions of a task's handler are retried, and after how long (the base of the
    exponential backoff; None: the service's ``RETRY_BASE_DELAY``)."""

    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_delay: float | None = None

    def retries(self, exc: BaseException) -> bool:
        return not isinstance(exc, InvalidTaskParams) and isinstance(exc, self.retry_on)


class JobHandle(Generic[R]):
    """A job enqueued through a task; ``await handle.result()`` gives its typed return value."""

    def __init__(self, task: Task[R], job: Job, target: JobQueueClient | JobQueueService) -> None:
        self.task = task
        self.job = job
        self.id = job.id
        self._target = target

    async def result(self, timeout: float | None = None) -> R:
        """Wait until the job finishes; its result converted to the task's return annotation,
        or ``JobFailed`` / ``JobCancelled`` carrying the remote error (``exc.job.error``)."""
        if isinstance(self._target, JobQueueClient):
            job = await self._target.wait(self.id, timeout=timeout, raise_on_failure=False)
        else:
            job = await _wait_in_process(self._target, self.id, timeout)
        self.job = job
        if job.status is JobStatus.CANCELLED:
            raise JobCancelled(job)
        if job.status is not JobStatus.COMPLETED:
            raise JobFailed(job)
        return self.task.decode_result(job.result_data)


class Task(Generic[R]):
    """A job type whose handler takes typed parameters; made by ``Registry.task``."""

    def __init__(
        self,
        registry: Registry,
        job_type: str,
        fn: Callable[..., Awaitable[R]],
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
        priority: int = 0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        retry_delay: float | None = None,
    ) -> None:
        self.registry = registry
        self.job_type = job_type
        self.fn = fn
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.priority = priority
        self.retry = RetryPolicy(retry_on=tuple(retry_on), retry_delay=retry_delay)
        self.params, self.returns = _signature_types(job_type, fn)
        self.__name__ = getattr(fn, "__name__", job_type)
        self.__doc__ = fn.__doc__

    async def __call__(self, ctx: JobContext, **params: Any) -> R:
        """Call the function itself (in a test, say), skipping the queue."""
        return await self.fn(ctx, **params)

    async def enqueue(
        self,
        *,
        _via: JobQueueClient | JobQueueService | None = None,
        _priority: int | None = None,
        _delay: float | None = None,
        _run_at: datetime | None = None,
        _idempotency_key: str | None = None,
        _max_attempts: int | None = None,
        _timeout: float | None = None,
        **params: Any,
    ) -> JobHandle[R]:
        """Queue a job of this task with ``params``; ``msgspec.ValidationError`` names a
        parameter that does not fit, before anything is sent."""
        data = msgspec.to_builtins(msgspec.convert(params, self.params))
        target = _via or self.registry.target or _context_service()
        if target is None:
            raise RuntimeError(
                f"{self.__name__}.enqueue: no queue to send the job to; call "
                "registry.connect(JobQueueClient(url)) (or a JobQueueService) or pass _via="
            )
        options: dict[str, Any] = {
            "priority": self.priority if _priority is None else _priority,
            "max_attempts": _max_attempts or self.max_attempts,
            "timeout": _timeout or self.timeout,
            "run_at": _run_at,
            "delay": _delay,
            "idempotency_key": _idempotency_key,
        }
        if isinstance(target, JobQueueClient):
            job = await target.enqueue(self.job_type, data, **options)
        else:
            job, _ = await target.create_job(self.job_type, data, **options)
        return JobHandle(self, job, target)

    def decode_result(self, value: Any) -> R:
        return value if self.returns is Any else msgspec.convert(value, self.returns)  # type: ignore[no-any-return]

    async def run(self, ctx: JobContext) -> Any:
        """The handler the pool calls: ``request_data`` into the parameters, then the function."""
        try:
            params = msgspec.convert(ctx.request_data if ctx.request_data is not None else {}, self.params)
        except msgspec.ValidationError as exc:
            raise InvalidTaskParams(f"request_data does not fit task {self.job_type!r}: {exc}") from None
        _running.set(ctx)  # this asyncio task runs this one job: no reset needed
        result = await self.fn(ctx, **{name: getattr(params, name) for name in self.params.__struct_fields__})
        return None if result is None else msgspec.to_builtins(result)


def _context_service() -> JobQueueService | None:
    ctx = _running.get(None)
    return None if ctx is None else ctx.service


def _signature_types(job_type: str, fn: Callable[..., Any]) -> tuple[type[msgspec.Struct], Any]:
    """The Struct of ``fn``'s parameters after the context, and its return annotation."""
    where = f"task {getattr(fn, '__qualname__', fn)!r} for job type {job_type!r}"
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"{where} must be an async def")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # a name in an annotation that does not resolve
        raise TypeError(f"{where}: cannot read its annotations ({exc})") from None
    parameters = list(inspect.signature(fn).parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(f"{where} must take the job context as its first argument: async def f(ctx, ...)")
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for parameter in parameters[1:]:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"{where}: *{parameter.name} cannot be sent as JSON; name each parameter")
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"{where}: parameter {parameter.name!r} must accept a keyword")
        kind = hints.get(parameter.name, Any)
        if parameter.default is inspect.Parameter.empty:
            fields.append((parameter.name, kind))
        else:
            fields.append((parameter.name, kind, parameter.default))
    name = "".join(part.capitalize() for part in job_type.replace("-", "_").split("_") if part.isidentifier())
    params = msgspec.defstruct(
        f"{name or 'Task'}Params", fields, kw_only=True, forbid_unknown_fields=True
    )
    try:
        msgspec.json.schema(params)  # every parameter type must be one msgspec can convert
    except TypeError as exc:
        raise TypeError(f"{where}: {exc}") from None
    return params, hints.get("return", Any)


async def _wait_in_process(service: JobQueueService, job_id: str, timeout: float | None) -> Job:
    from jobqueue.client import WaitTimeout
    from jobqueue.models import TERMINAL_STATUSES

    if timeout is not None:
        job = await service.wait_for_job(job_id, timeout)
        if job.status not in TERMINAL_STATUSES:
            raise WaitTimeout(job_id, timeout, job)
        return job
    while (job := await service.wait_for_job(job_id, 60.0)).status not in TERMINAL_STATUSES:
        pass  # no deadline: wait another minute
    return job
