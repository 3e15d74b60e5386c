"""What a worker runs: handlers, their per-task options, and the context they receive."""

from __future__ import annotations

import functools
import inspect
import math
import random
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import structlog

from ..exceptions import InvalidInput
from ..models import Lease
from ..protocol import validate

if TYPE_CHECKING:
    from ..protocol.queue import Queue

__all__ = ["Backoff", "Handler", "JobContext", "Lifespan", "Middleware", "Task"]


class JobContext:
    """Passed to a handler as its first argument: which job it runs, and with what lease.

    ``queue`` is the :class:`~leaseq.Queue` the job came from (use it to enqueue follow-up
    jobs); ``log`` is a structlog logger bound with queue, job id, attempt and token;
    ``state`` is what the worker's ``lifespan`` yielded (database pools, HTTP clients),
    ``None`` without one.
    """

    __slots__ = ("_current", "_fields", "_log", "queue", "state")

    def __init__(
        self, queue: Queue, current_lease: Callable[[], Lease], fields: dict[str, Any],
        state: Any = None,
    ) -> None:
        self.queue = queue
        self._current = current_lease
        self._fields = fields
        self._log: Any = None
        self.state = state

    @property
    def log(self) -> Any:
        """A structlog logger bound with queue, job_id, attempt, token and task (made on
        first use: most handlers never log)."""
        if self._log is None:
            self._log = structlog.get_logger("leaseq.job").bind(**self._fields)
        return self._log

    @property
    def lease(self) -> Lease:
        """The job's lease as last renewed by the worker's heartbeat."""
        return self._current()

    @property
    def _lease(self) -> Lease:
        return self._current()

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self._lease.job_id

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, ..."""
        return self._lease.attempt

    @property
    def task(self) -> str:
        """The task name the job was enqueued with."""
        return self._lease.task

    @property
    def max_attempts(self) -> int:
        """Runs the job gets before it goes to ``dead``."""
        return self._lease.max_attempts

    async def progress(self, fraction: float, message: str | None = None, **data: Any) -> None:
        """Report how far the job got: ``fraction`` (0 to 1), an optional ``message``
        and JSON ``data`` (see :meth:`~leaseq.Queue.progress`). Raises
        :class:`~leaseq.LeaseLost` when the job's lease is no longer this worker's (its
        result will not be acked either)."""
        await self.queue.progress(self._lease, fraction, message, **data)

    def __repr__(self) -> str:
        return (f"JobContext(queue={self.queue.name!r}, job_id={self.job_id!r}, "
                f"attempt={self.attempt}, task={self.task!r})")


Handler: TypeAlias = Callable[[JobContext, Any], Any]
"""An ``async def handler(ctx, payload)`` returning a result the serializer can encode;
or a plain ``def handler(ctx, payload)``, which the worker runs in a thread (its lease
renewed meanwhile; see ``Worker(sync_concurrency=...)``)."""

Middleware: TypeAlias = Callable[[JobContext], AbstractAsyncContextManager[Any]]
"""Called with each job's context, around its handler: an async context manager (for
example an ``@asynccontextmanager`` function) entered before the handler runs and exited
after it; the first of the worker's ``middleware`` is the outermost. An exception in one
is the job's failure, never the worker's."""


Lifespan: TypeAlias = Callable[[Any], AbstractAsyncContextManager[Any]]
"""Called with the :class:`~leaseq.Worker` when it starts: an async context manager
(for example an ``@asynccontextmanager`` function) entered before the first claim and
exited after the drain; what it yields is every handler's ``ctx.state``."""


def is_async(handler: Any) -> bool:
    """Whether calling ``handler`` gives an awaitable to await (an ``async def``, a
    partial of one, a ``functools.wraps`` wrapper of one, or an object whose
    ``__call__`` is one) rather than a result."""
    target = handler.func if isinstance(handler, functools.partial) else handler
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
            inspect.unwrap(target)):
        return True
    return (callable(target) and not inspect.isroutine(target)
            and inspect.iscoroutinefunction(type(target).__call__))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number ``attempt`` of a failed job: ``base * factor**(attempt-1)``
    seconds, capped at ``max``, then multiplied by a random factor in ``[1 - jitter, 1]``
    so that jobs failing together do not retry together."""

    base: float = 1.0
    """Delay after the first failure, in seconds (0 retries at once)."""
    factor: float = 2.0
    """Growth per further failure."""
    max: float = 300.0
    """Upper bound of the delay, in seconds."""
    jitter: float = 0.5
    """Fraction of the delay that is random (0 = none, 1 = full jitter)."""

    def __post_init__(self) -> None:
        validate.seconds(self.base, "Backoff.base", allow_zero=True)
        validate.seconds(self.max, "Backoff.max", allow_zero=True)
        if not 1.0 <= self.factor < 1e6:
            raise InvalidInput(f"Backoff.factor must be >= 1, got {self.factor!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise InvalidInput(f"Backoff.jitter must be within [0, 1], got {self.jitter!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before running again after failed attempt ``attempt``."""
        steps = max(0, attempt - 1)
        # In log space: factor ** steps overflows a float long before it exceeds max.
        if self.base <= 0 or steps * math.log(max(self.factor, 1.0)) >= math.log(
                max(self.max, 1e-300) / self.base):
            raw = self.max if self.base > 0 else 0.0
        else:
            raw = min(self.max, self.base * self.factor ** steps)
        return raw * (1.0 - self.jitter * random.random())


@dataclass(frozen=True, slots=True)
class Task:
    """A handler with options of its own; use it as a value of the worker's handler map.

    ``timeout``: seconds a run may take before it is cancelled and counted as a failure.
    ``lease_timeout``: lease length for this task (the worker renews to it right after the
    claim), so long jobs need not force a long lease on every job. ``max_attempts``: caps
    the attempts of this task's jobs below their own limit (stored with each job when it
    is claimed, so failures, lease expiries, ``inspect`` and the dashboard all use it).
    ``backoff``: retry delays.
    """

    handler: Handler
    """The ``async def handler(ctx, payload)`` (or a plain ``def``, run in a thread)."""
    timeout: float | None = None
    """Per-run time limit in seconds; ``None`` uses the worker's ``job_timeout``."""
    lease_timeout: float | None = None
    """Lease length for this task; ``None`` keeps the job's (queue's) lease length."""
    max_attempts: int | None = None
    """Cap on attempts (failures and lease expiries); ``None`` keeps the job's limit."""
    backoff: Backoff | None = None
    """Retry delays; ``None`` uses the worker's."""
    sync: bool = field(init=False, default=False)
    """Whether the handler is a plain function, run in a worker thread."""

    def __post_init__(self) -> None:
        if not callable(self.handler):
            raise InvalidInput(f"Task handler must be callable, got {self.handler!r}")
        object.__setattr__(self, "sync", not is_async(self.handler))
        if self.timeout is not None:
            validate.seconds(self.timeout, "Task.timeout", allow_zero=False)
        if self.lease_timeout is not None:
            validate.seconds(self.lease_timeout, "Task.lease_timeout", allow_zero=False)
        if self.max_attempts is not None:
            validate.positive_int(self.max_attempts, "Task.max_attempts")


def normalise_handlers(handlers: Mapping[str, Any]) -> dict[str, Task]:
    """Check a handler map (handlers, :class:`Task` objects and typed tasks) and return
    it with every value as a :class:`Task`."""
    if not isinstance(handlers, Mapping) or not handlers:
        raise InvalidInput("handlers must be a non-empty mapping of task name -> handler")
    out: dict[str, Task] = {}
    for name, spec in handlers.items():
        validate.task_name(name)
        typed = getattr(spec, "task_options", None)  # a TypedTask (leaseq.task)
        if isinstance(typed, Task):
            if getattr(spec, "name", name) != name:
                raise InvalidInput(f"typed task {spec.name!r} is enqueued under its own "
                                   f"name: map it as {{{spec.name!r}: ...}}, not {name!r}")
            out[name] = typed
        else:
            out[name] = spec if isinstance(spec, Task) else Task(spec)
    return out
