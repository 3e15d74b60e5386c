"""Routing by task name, so producers need not know which queue serves a task."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..exceptions import InvalidInput
from . import validate
from .queue import Queue

__all__ = ["Router"]


class Router:
    """Sends each task to its queue: ``Router({"send_email": emails, "resize": images},
    default=misc)``. A task without a route goes to ``default``, or is refused with
    :class:`~leaseq.InvalidInput` (before anything is written) when there is none."""

    def __init__(self, routes: Mapping[str, Queue], default: Queue | None = None) -> None:
        for task, queue in routes.items():
            validate.task_name(task)
            if not isinstance(queue, Queue):
                raise InvalidInput(f"route of task {task!r} must be a Queue, got {queue!r}")
        if default is not None and not isinstance(default, Queue):
            raise InvalidInput(f"default must be a Queue, got {default!r}")
        self.routes = dict(routes)
        self.default = default

    def queue_for(self, task: str) -> Queue:
        """The queue that serves ``task``."""
        queue = self.routes.get(task, self.default)
        if queue is None:
            raise InvalidInput(f"no queue for task {task!r} (routes: {sorted(self.routes)})")
        return queue

    async def enqueue(self, task: str, payload: Any = None, **options: Any) -> str:
        """:meth:`Queue.enqueue` on the task's queue."""
        return await self.queue_for(task).enqueue(task, payload, **options)

    async def enqueue_many(self, task: str, payloads: Iterable[Any], **options: Any
                           ) -> list[str]:
        """:meth:`Queue.enqueue_many` on the task's queue."""
        return await self.queue_for(task).enqueue_many(task, payloads, **options)

    async def map(self, task: str, payloads: Iterable[Any], **options: Any) -> list[Any]:
        """:meth:`Queue.map` on the task's queue."""
        return await self.queue_for(task).map(task, payloads, **options)
