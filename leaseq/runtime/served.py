"""One queue a worker serves, with what serving it takes."""

from __future__ import annotations

from collections.abc import Mapping

from ..protocol.queue import Queue
from .acks import AckBatcher
from .task import Handler, Task, normalise_handlers

__all__ = ["Served"]


class Served:
    """One queue a worker serves: the queue, its handlers and its ack batcher."""

    __slots__ = ("acks", "caps", "queue", "tasks")

    def __init__(self, queue: Queue, handlers: Mapping[str, Handler | Task]) -> None:
        self.queue = queue
        self.tasks = normalise_handlers(handlers)
        self.acks = AckBatcher(queue)
        # Per-task attempt limits, applied (and stored with each job) at claim time.
        self.caps = {name: t.max_attempts for name, t in self.tasks.items()
                     if t.max_attempts is not None}
