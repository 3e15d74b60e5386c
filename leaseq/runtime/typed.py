"""Typed tasks: an ``async def`` handler with a signature of its own, whose enqueue calls
are checked by a type checker against that signature.

``@task(queue)`` turns ``async def resize(ctx, image_id: int, *, width: int) -> dict``
into a :class:`TypedTask`: ``await resize.enqueue(7, width=128)`` (checked against
``(image_id: int, *, width: int)``) returns a :class:`TaskRun` whose ``wait()`` is typed
``dict``. The arguments travel as the job's payload (``{"args": [...], "kwargs": {...}}``,
through the queue's serializer); a worker runs the task when it is a value of its handler
map (``Worker(queue, {resize.name: resize})``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeAlias, TypeVar, cast

from ..exceptions import InvalidInput, SerializationError
from ..protocol import validate
from ..protocol.queue import Queue
from .task import Backoff, Handler, JobContext, Task, is_async

__all__ = ["Call", "HandlerSpec", "TaskRun", "TypedTask", "task"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Call(Generic[P]):
    """The arguments of one run of a typed task (made by :meth:`TypedTask.call`), for
    :meth:`TypedTask.enqueue_many` and :meth:`TypedTask.map`."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        """The job payload that carries these arguments."""
        return {"args": list(self.args), "kwargs": self.kwargs}


@dataclass(frozen=True, slots=True)
class TaskRun(Generic[R]):
    """One enqueued run of a typed task."""

    queue: Queue
    job_id: str
    """The job's id."""

    async def wait(self, timeout: float | None = None) -> R:
        """Wait until the job is done and return its result (see :meth:`Queue.wait`)."""
        return cast("R", await self.queue.wait(self.job_id, timeout))


class TypedTask(Generic[P, R]):
    """A task bound to a queue, its enqueue calls typed by its function's signature.

    Calling the object runs the function itself (``await resize(ctx, 7, width=128)``),
    which is how a unit test runs it inline.
    """

    def __init__(
        self, queue: Queue, fn: Callable[Concatenate[JobContext, P], Awaitable[R]], *,
        name: str | None = None, timeout: float | None = None,
        lease_timeout: float | None = None, max_attempts: int | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if not isinstance(queue, Queue):
            raise InvalidInput(f"task() binds to a Queue, got {queue!r}")
        if not is_async(fn):
            raise InvalidInput(f"a typed task is an async def function, got {fn!r}")
        self.queue = queue
        self.fn = fn
        self.name = validate.task_name(name or getattr(fn, "__name__", ""))
        """The task name jobs are enqueued with (default: the function's name)."""
        self.task_options = Task(self._run, timeout=timeout, lease_timeout=lease_timeout,
                                 max_attempts=max_attempts, backoff=backoff)
        """What a worker runs for this task (its options, around the function)."""
        self.__doc__ = fn.__doc__

    async def __call__(self, ctx: JobContext, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function now, in this task (no queue involved)."""
        return await self.fn(ctx, *args, **kwargs)

    async def _run(self, ctx: JobContext, payload: Any) -> R:
        if not (isinstance(payload, dict) and isinstance(payload.get("args"), list)
                and isinstance(payload.get("kwargs"), dict)):
            raise InvalidInput(f"task {self.name!r} expects a payload of args and kwargs "
                               f"(enqueued by its .enqueue()), got {payload!r}")
        return await self.fn(ctx, *payload["args"], **payload["kwargs"])

    def call(self, *args: P.args, **kwargs: P.kwargs) -> Call[P]:
        """The arguments of one run, checked against the function's signature."""
        return Call(args, dict(kwargs))

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskRun[R]:
        """Enqueue one run with these arguments. Arguments the serializer cannot encode
        are :class:`~leaseq.InvalidInput`, before anything is written."""
        (run,) = await self.enqueue_many([Call(args, dict(kwargs))])
        return run

    async def enqueue_many(
        self, calls: Iterable[Call[P]], *, delay: float | None = None,
        priority: int | None = None, key: str | None = None,
        expires_in: float | None = None,
    ) -> list[TaskRun[R]]:
        """Enqueue one run per :meth:`call`, all or nothing (see
        :meth:`Queue.enqueue_many`); ``delay`` defers them all, ``priority``, ``key`` and
        ``expires_in`` place them as :meth:`Queue.enqueue` does."""
        with self._encodable():
            ids = await self.queue.enqueue_many(
                self.name, [c.payload() for c in calls], delay=delay, priority=priority,
                key=key, expires_in=expires_in)
        return [TaskRun(self.queue, job_id) for job_id in ids]

    async def map(self, calls: Iterable[Call[P]], *, timeout: float | None = None) -> list[R]:
        """Enqueue one run per :meth:`call` and return their results in order (see
        :meth:`Queue.map`)."""
        with self._encodable():
            results = await self.queue.map(self.name, [c.payload() for c in calls],
                                           timeout=timeout)
        return cast("list[R]", results)

    @contextmanager
    def _encodable(self) -> Iterator[None]:
        """Arguments the serializer cannot encode are the caller's bad input."""
        try:
            yield
        except SerializationError as exc:
            raise InvalidInput(f"arguments of task {self.name!r} cannot be encoded: {exc}"
                               ) from exc

    def __repr__(self) -> str:
        return f"TypedTask({self.name!r}, queue={self.queue.name!r})"


HandlerSpec: TypeAlias = "Handler | Task | TypedTask[Any, Any]"
"""A value of a worker's handler map: a handler, a :class:`~leaseq.Task`, or a typed
task."""


def task(
    queue: Queue, *, name: str | None = None, timeout: float | None = None,
    lease_timeout: float | None = None, max_attempts: int | None = None,
    backoff: Backoff | None = None,
) -> Callable[[Callable[Concatenate[JobContext, P], Awaitable[R]]], TypedTask[P, R]]:
    """A decorator that makes an ``async def fn(ctx, ...)`` a :class:`TypedTask` of
    ``queue``; the options are :class:`~leaseq.Task`'s."""

    def wrap(fn: Callable[Concatenate[JobContext, P], Awaitable[R]]) -> TypedTask[P, R]:
        return TypedTask(queue, fn, name=name, timeout=timeout, lease_timeout=lease_timeout,
                         max_attempts=max_attempts, backoff=backoff)

    return wrap
